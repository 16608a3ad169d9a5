"""On Lambda: the handler's metrics as CloudWatch EMF, checked against the specification, and its logs.

The handler runs in a process of its own, as a Lambda instance does (AWS_LAMBDA_FUNCTION_NAME set,
Powertools loaded with the module), fed real API Gateway events; what it writes to stdout is what
CloudWatch Logs would receive.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.support.emf import check_emf, dimensions, emf_documents, metric_names
from tests.support.events import http_v2_event, rest_v1_event
from tests.support.factories import MakeIngestor
from tests.support.lambda_process import invoke_cold_with_output

pytestmark = pytest.mark.slow  # a fresh interpreter per test

NAMESPACE = "PipelineTests"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
ROUTES = {"/api/v1/raw-data", "/api/v1/health", "/api/v1/readings", "/api/v1/status", "unmatched"}
ALLOWED_DIMENSIONS = {"service", "route", "method", "status_class", "rpc", "code", "function_name"}


def test_every_invocation_writes_emf_with_no_per_request_dimension(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=1000)
    body = json.dumps([{"timestamp": "2024-01-20T10:00:00Z", "value": 1.0, "category": "A"}] * 2)
    events = [
        rest_v1_event("POST", "/api/v1/readings", body=body, headers={"content-type": "application/json"}),
        rest_v1_event("GET", "/api/v1/raw-data", {"limit": "1"}),
        http_v2_event("GET", "/api/v1/raw-data", {"limit": "2", "category": "A"}),
        http_v2_event("GET", "/api/v1/health"),
        rest_v1_event("GET", "/api/v1/status"),
        http_v2_event("GET", "/api/v1/no-such-thing/12345"),
        rest_v1_event("GET", "/metrics"),  # off on Lambda
    ]
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": "pipeline-function",
        "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
        "POWERTOOLS_SERVICE_NAME": "pipeline",
        "_X_AMZN_TRACE_ID": XRAY,
        "INGESTOR_ADDRESS": ingestor.address,
    }
    answers, output = invoke_cold_with_output(events, env)
    assert [answer["statusCode"] for answer in answers] == [202, 200, 200, 200, 200, 404, 404]

    documents = emf_documents(output)
    for document in documents:
        check_emf(document)
        assert {d["Namespace"] for d in document["_aws"]["CloudWatchMetrics"]} == {NAMESPACE}
        assert set(dimensions(document)) <= ALLOWED_DIMENSIONS, document
    # One cold start, on the first invocation only.
    cold = [document for document in documents if "ColdStart" in metric_names(document)]
    assert len(cold) == 1
    assert dimensions(cold[0]) == {"function_name": "pipeline-function", "service": "pipeline"}

    requests = [document for document in documents if "Requests" in metric_names(document)]
    assert len(requests) == len(events)
    routes = Counter(dimensions(document)["route"] for document in requests)
    assert routes == {
        "/api/v1/readings": 1,
        "/api/v1/raw-data": 2,
        "/api/v1/health": 1,
        "/api/v1/status": 1,
        "unmatched": 2,  # /metrics is not a route on Lambda
    }
    by_route = {dimensions(document)["route"]: document for document in requests}
    assert dimensions(by_route["/api/v1/readings"]) == {
        "service": "pipeline",
        "route": "/api/v1/readings",
        "method": "POST",
        "status_class": "2xx",
    }
    assert by_route["/api/v1/readings"]["ReadingsWritten"] == [2.0]
    assert by_route["unmatched"]["Requests"] == [1.0]
    raw = [document for document in requests if dimensions(document)["route"] == "/api/v1/raw-data"]
    assert sorted(document["ReadingsReturned"][0] for document in raw) == [1.0, 2.0]
    assert all(document["Latency"][0] > 0 for document in requests)

    calls = [document for document in documents if "IngestorCalls" in metric_names(document)]
    assert Counter(dimensions(document)["rpc"] for document in calls) == {
        "WriteReadings": 1,
        "ExportReadings": 2,
        "GetStatus": 1,
    }
    assert {dimensions(document)["code"] for document in calls} == {"OK"}
    assert all(document["IngestorCallFailures"] == [0.0] for document in calls)

    # Dimension values come from small fixed sets: never a raw path, a query, an id or a trace.
    request_lines = [json.loads(line) for line in output.splitlines() if '"functions.access"' in line]
    assert len(request_lines) == len(events)
    per_request = {line["request_id"] for line in request_lines} | {line["trace_id"] for line in request_lines}
    for document in documents:
        found = dimensions(document)
        assert found.get("route", "unmatched") in ROUTES
        assert found.get("method", "GET") in {"GET", "POST"}
        assert found.get("status_class", "2xx") in {"2xx", "4xx"}
        assert not set(found.values()) & per_request
        assert not any("12345" in value or "limit" in value for value in found.values())
    # Every line of a request carries its trace id, and on Lambda the invocation's X-Ray trace id.
    assert all(line["xray_trace_id"] == XRAY for line in request_lines)
    assert len({line["trace_id"] for line in request_lines}) == len(events)


def test_metrics_off_writes_no_emf(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=10)
    env = {"AWS_LAMBDA_FUNCTION_NAME": "pipeline-function", "METRICS": "false", "INGESTOR_ADDRESS": ingestor.address}
    answers, output = invoke_cold_with_output([rest_v1_event("GET", "/api/v1/status")], env)
    assert answers[0]["statusCode"] == 200
    assert emf_documents(output) == []
    assert '"functions.access"' in output  # the request was served, and logged
