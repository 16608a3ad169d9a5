"""Read a Prometheus text exposition into samples, with the reference library's own parser."""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
METRICS_LINE = re.compile(r"metrics on http://[^\s:]+:(\d+)/metrics")


def parse(text: str) -> Samples:
    """Every sample of an exposition by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str, headers: Mapping[str, str] | None = None) -> Samples:
    response = httpx.get(url, headers=dict(headers or {}), timeout=10)
    response.raise_for_status()
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample named ``name`` with exactly these labels (KeyError when there is none)."""
    return samples[name, frozenset(labels.items())]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def metrics_port(output: list[str]) -> int:
    """The metrics port an ingestor process logged."""
    for line in output:
        if match := METRICS_LINE.search(line):
            return int(match.group(1))
    raise AssertionError("the ingestor logged no metrics port:\n" + "".join(output))
