"""CloudWatch Embedded Metric Format: the published specification's rules, checked on a log line.

The JSON Schema covers the structure (the ``_aws`` metadata object, its ``CloudWatchMetrics``
directives, their dimension sets and metric definitions, with the specification's limits); the
rest are the rules a schema cannot state: every dimension and metric a directive names is a member
of the root node, a dimension's value a string, a metric's a number or an array of at most 100.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs

UNITS = [
    *("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes"),
    *("Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second"),
    *("Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second"),
    *("Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"),
]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "LogGroupName": {"type": "string", "minLength": 1},
                "LogStreamName": {"type": "string", "minLength": 1},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": r"^[^:].*$"},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {"type": "string", "enum": UNITS},
                                        "StorageResolution": {"type": "integer", "enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}
_VALIDATOR = jsonschema_rs.validator_for(SCHEMA)


def emf_documents(output: str) -> list[dict[str, Any]]:
    """The EMF documents among a process's output lines (JSON objects with an ``_aws`` member)."""
    documents = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def check_emf(document: dict[str, Any]) -> None:
    """AssertionError unless ``document`` follows the specification."""
    errors = [error.message for error in _VALIDATOR.iter_errors(document)]
    assert not errors, f"{errors}: {document}"
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for dimension in dimension_set:
                assert isinstance(document.get(dimension), str), f"dimension {dimension} is not a string member"
                assert 0 < len(document[dimension]) <= 1024
        for metric in directive["Metrics"]:
            member = document.get(metric["Name"])
            assert member is not None, f"metric {metric['Name']} is not a member of the root node"
            values = member if isinstance(member, list) else [member]
            assert 0 < len(values) <= 100
            assert all(isinstance(value, int | float) and not isinstance(value, bool) for value in values), member


def dimensions(document: dict[str, Any]) -> dict[str, str]:
    """The dimensions a document's directives name, with their values."""
    names = {
        name
        for directive in document["_aws"]["CloudWatchMetrics"]
        for dimension_set in directive["Dimensions"]
        for name in dimension_set
    }
    return {name: document[name] for name in names}


def metric_names(document: dict[str, Any]) -> set[str]:
    return {metric["Name"] for directive in document["_aws"]["CloudWatchMetrics"] for metric in directive["Metrics"]}
