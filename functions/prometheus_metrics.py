"""The function's metrics in Prometheus form, served at ``/metrics`` under uvicorn.

One registry per process (the library's default one, with its process and platform collectors).
Labels are bounded: route templates, methods, status classes, RPC names and status codes.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from functions.telemetry import Measure

HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class PrometheusSink:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call] # the _created series only double what a scrape needs
        request_labels = ["route", "method", "status_class"]
        self._requests = Counter("function_http_requests", "HTTP requests answered.", request_labels)
        self._latency = Histogram(
            "function_http_request_duration_seconds",
            "Time to answer an HTTP request (a stream: its whole life).",
            request_labels,
            buckets=HTTP_BUCKETS,
        )
        self._returned = Counter("function_readings_returned", "Readings answered with, by route.", ["route"])
        self._written = Counter("function_readings_written", "Readings stored at the ingestor.")
        self._calls = Histogram(
            "function_ingestor_call_duration_seconds",
            "Time of each call to the ingestor, by RPC and status code.",
            ["rpc", "code"],
            buckets=RPC_BUCKETS,
        )
        self._failures = Counter(
            "function_ingestor_call_failures", "Calls to the ingestor that did not end OK.", ["rpc", "code"]
        )

    def request(self, route: str, method: str, status_class: str, seconds: float, measure: Measure) -> None:
        self._requests.labels(route, method, status_class).inc()
        self._latency.labels(route, method, status_class).observe(seconds)
        if measure.readings_returned:
            self._returned.labels(route).inc(measure.readings_returned)
        if measure.readings_written:
            self._written.inc(measure.readings_written)

    def ingestor_call(self, rpc: str, code: str, seconds: float) -> None:
        self._calls.labels(rpc, code).observe(seconds)
        if code != "OK":
            self._failures.labels(rpc, code).inc()


@cache
def prometheus_sink() -> PrometheusSink:
    """The process's sink, made (and the library imported) on first use."""
    return PrometheusSink()


def exposition() -> bytes:
    """Every metric of the process in Prometheus' text format."""
    prometheus_sink()
    return generate_latest(REGISTRY)
