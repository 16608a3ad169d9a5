"""A real Prometheus scrapes a real ingestor and a real function (uvicorn), and agrees with /status."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.processes import ROOT, ServerProcess
from devtools.waiting import wait_until
from tests.support.clients import api_http
from tests.support.factories import MakeStack
from tests.support.prometheus import Prometheus, running_prometheus
from tests.support.scrape import metrics_port

DASHBOARD = ROOT / "deploy" / "grafana" / "pipeline-dashboard.json"
RAW_DATA_CALLS = 7
PROCESSED_DATA_CALLS = 5
# PromQL words that are not metric names: functions, aggregations, keywords, Grafana's variables.
_NOT_METRICS = re.compile(r"^(by|without|on|ignoring|group_left|group_right|bool|and|or|unless|offset|le|time)$")


@pytest.fixture
def stack(make_stack: MakeStack, tmp_path: Path) -> tuple[ServerProcess, ServerProcess]:
    # Durable, so that the journal's metrics are there too.
    return make_stack(capacity=10_000, rate_hz=500, metrics_port=0, data_dir=tmp_path)


@pytest.fixture
def prometheus(stack: tuple[ServerProcess, ServerProcess]) -> Iterator[Prometheus]:
    ingestor, api = stack
    targets = {"ingestor": f"{ingestor.host}:{metrics_port(ingestor.output)}", "function": api.address}
    with running_prometheus(targets) as server:
        yield server


def test_prometheus_sees_what_status_says(stack: tuple[ServerProcess, ServerProcess], prometheus: Prometheus) -> None:
    _, api = stack
    with api_http(api) as http:
        http.post("/start-ingestion").raise_for_status()
        wait_until(lambda: http.get("/status").json()["total_ingested"] >= 200, 10, "too few readings")
        http.post("/stop-ingestion").raise_for_status()
        readings = [{"timestamp": "2024-01-20T10:00:00Z", "value": 1.5, "category": "A"}] * 3
        key = {"Idempotency-Key": "batch-1"}
        # Late: older than the generated ones. The same key with other readings fails at the ingestor.
        assert http.post("/readings", json=readings, headers=key).json() == {"accepted": 3}
        assert http.post("/readings", json=readings[:1], headers=key).status_code == 422
        for _ in range(RAW_DATA_CALLS):
            http.get("/raw-data", params={"limit": 10}).raise_for_status()
        for _ in range(PROCESSED_DATA_CALLS):
            http.get("/processed-data").raise_for_status()
        status = http.get("/status").json()  # the quiet moment: nothing is generated or written any more

    wait_until(lambda: prometheus.targets_up() == 2, 20, "prometheus does not reach both targets")
    ingested = wait_until(
        lambda: prometheus.scalar("sum(ingestor_readings_ingested_total)") == status["total_ingested"],
        20,
        f"prometheus does not see the {status['total_ingested']} readings /status counts",
    )
    assert ingested
    assert prometheus.scalar('ingestor_readings_ingested_total{source="write"}') == 3
    assert prometheus.scalar("ingestor_readings_evicted_total") == status["evicted"]
    assert prometheus.scalar("ingestor_readings_late_total") == status["late"] >= 3
    assert prometheus.scalar("ingestor_buffer_readings") == status["buffered"]

    requests = 'function_http_requests_total{route="%s",method="GET",status_class="2xx"}'
    assert prometheus.scalar(requests % "/api/v1/raw-data") == RAW_DATA_CALLS
    assert prometheus.scalar(requests % "/api/v1/processed-data") == PROCESSED_DATA_CALLS
    assert prometheus.scalar('function_readings_returned_total{route="/api/v1/raw-data"}') == 10 * RAW_DATA_CALLS
    assert prometheus.scalar("function_readings_written_total") == 3
    # The latency histogram holds every request, in buckets.
    latency = 'function_http_request_duration_seconds_%s{route="/api/v1/processed-data"}'
    assert prometheus.scalar(latency % "count") == PROCESSED_DATA_CALLS
    buckets = prometheus.query(latency % "bucket")
    assert len(buckets) > 5
    assert max(float(item["value"][1]) for item in buckets) == PROCESSED_DATA_CALLS
    # raw-data pages come through ExportReadings; per-category aggregates from the ingestor's
    # partials, through AggregateReadings.
    calls = {"ExportReadings": RAW_DATA_CALLS, "AggregateReadings": PROCESSED_DATA_CALLS}
    for rpc, made in calls.items():
        assert prometheus.scalar(f'sum(function_ingestor_call_duration_seconds_count{{rpc="{rpc}"}})') >= made
        assert prometheus.scalar(f'sum(ingestor_rpc_requests_total{{method="{rpc}",code="OK"}})') >= made
    failed = 'function_ingestor_call_failures_total{rpc="WriteReadings",code="FAILED_PRECONDITION"}'
    assert prometheus.scalar(failed) == 1
    assert prometheus.scalar('ingestor_readings_rejected_total{reason="batch_id_reused"}') == 1
    assert prometheus.scalar("ingestor_journal_commit_duration_seconds_count") >= 1

    dashboard_metrics_are_all_scraped(prometheus)


def metric_names_in(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords,
    label names or strings."""
    without_strings = re.sub(r'"[^"]*"', "", expression)
    without_matchers = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_matchers)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_ranges)
    words = re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b(?!\s*\()", without_groupings)
    return {word for word in words if not _NOT_METRICS.match(word) and not re.fullmatch(r"[0-9.]+", word)}


def dashboard_metrics_are_all_scraped(prometheus: Prometheus) -> None:
    dashboard = json.loads(Path(DASHBOARD).read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 20
    scraped = prometheus.metric_names()
    for expression in expressions:
        names = metric_names_in(expression)
        assert names, expression
        assert names <= scraped, f"{expression} refers to {sorted(names - scraped)}, which no target exposes"
        # And it is PromQL that Prometheus evaluates (Grafana's interval variable filled in).
        prometheus.query(expression.replace("$__rate_interval", "1m"))
