"""A W3C traceparent on a request is continued into the ingestor: both processes log its trace id."""

from __future__ import annotations

import json
from typing import Any

from devtools.processes import ServerProcess
from devtools.waiting import wait_until
from tests.support.clients import api_http
from tests.support.factories import MakeStack

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def json_lines(process: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(process.output) if line.startswith("{")]


def lines_with(process: ServerProcess, trace_id: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(process) if line.get("trace_id") == trace_id]


def test_the_trace_id_is_in_both_processes_logs(make_stack: MakeStack) -> None:
    ingestor, api = make_stack(log_level="DEBUG")  # the ingestor logs every call at DEBUG
    with api_http(api) as http:
        assert http.get("/status", headers={"traceparent": TRACEPARENT}).status_code == 200
        assert http.get("/raw-data").status_code == 200  # no traceparent: a trace of its own

    function_lines = wait_until(lambda: lines_with(api, TRACE_ID), 5, "the function logged no line with the trace")
    assert [line["path"] for line in function_lines] == ["/api/v1/status"]
    ingestor_lines = wait_until(lambda: lines_with(ingestor, TRACE_ID), 5, "the ingestor logged no line with it")
    assert [line["method"] for line in ingestor_lines] == ["/ingestor.v1.IngestorService/GetStatus"]
    assert ingestor_lines[0]["request_id"] == function_lines[0]["request_id"]

    # A request without one starts a fresh trace, continued the same way.
    fresh = wait_until(
        lambda: [line for line in json_lines(api) if line.get("path") == "/api/v1/raw-data"], 5, "no raw-data line"
    )
    assert len(fresh) == 1
    fresh_id = fresh[0]["trace_id"]
    assert len(fresh_id) == 32
    assert fresh_id != TRACE_ID
    continued = wait_until(lambda: lines_with(ingestor, fresh_id), 5, "the fresh trace did not reach the ingestor")
    assert {line["method"] for line in continued} == {"/ingestor.v1.IngestorService/ExportReadings"}


def test_a_malformed_traceparent_starts_a_new_trace(make_stack: MakeStack) -> None:
    _, api = make_stack()
    with api_http(api) as http:
        for bad in ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", "not-a-traceparent", TRACEPARENT.upper()):
            assert http.get("/health", headers={"traceparent": bad}).status_code == 200

    def health_lines() -> list[dict[str, Any]]:
        return [line for line in json_lines(api) if line.get("path") == "/api/v1/health"]

    wait_until(lambda: len(health_lines()) == 3, 5, "not every request was logged")
    lines = health_lines()
    assert len({line["trace_id"] for line in lines}) == 3
    assert all(line["trace_id"] not in ("0" * 32, TRACE_ID, TRACE_ID.upper()) for line in lines)
