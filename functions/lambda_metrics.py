"""On Lambda: the function's metrics as CloudWatch Embedded Metric Format, through Powertools.

The handler is wrapped with ``log_metrics``: a ``ColdStart`` metric on an instance's first
invocation, and the request's metrics flushed as one EMF line when it ends, with the dimensions
``route`` (the template, never the raw path), ``method``, ``status_class`` and ``service``. Calls
to the ingestor are written as they end, one line each, with ``rpc`` and ``code``. The namespace
comes from ``POWERTOOLS_METRICS_NAMESPACE``, the service from ``POWERTOOLS_SERVICE_NAME``.
Nothing per request (an id, a path, a trace) is ever a dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, Metrics, MetricUnit

from functions.settings import get_settings
from functions.telemetry import Measure


class EmfSink:
    def __init__(self) -> None:
        settings = get_settings()
        self._namespace = settings.powertools_metrics_namespace
        self._service = settings.powertools_service_name
        self.metrics = Metrics(namespace=self._namespace, service=self._service)

    def request(self, route: str, method: str, status_class: str, seconds: float, measure: Measure) -> None:
        metrics = self.metrics
        metrics.add_dimension(name="route", value=route)
        metrics.add_dimension(name="method", value=method)
        metrics.add_dimension(name="status_class", value=status_class)
        metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=seconds * 1000)
        metrics.add_metric(name="ReadingsReturned", unit=MetricUnit.Count, value=measure.readings_returned)
        metrics.add_metric(name="ReadingsWritten", unit=MetricUnit.Count, value=measure.readings_written)

    def ingestor_call(self, rpc: str, code: str, seconds: float) -> None:
        call = EphemeralMetrics(namespace=self._namespace, service=self._service)
        call.add_dimension(name="rpc", value=rpc)
        call.add_dimension(name="code", value=code)
        call.add_metric(name="IngestorCalls", unit=MetricUnit.Count, value=1)
        call.add_metric(name="IngestorCallLatency", unit=MetricUnit.Milliseconds, value=seconds * 1000)
        call.add_metric(name="IngestorCallFailures", unit=MetricUnit.Count, value=0 if code == "OK" else 1)
        call.flush_metrics()


_sink: EmfSink | None = None


def emf_sink() -> EmfSink:
    """The process's sink (one Metrics object, as Powertools expects)."""
    global _sink
    if _sink is None:
        _sink = EmfSink()
    return _sink


def with_metrics(handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> Callable[[dict[str, Any], Any], Any]:
    """``handler`` flushing its request's metrics when it returns, and counting cold starts."""
    wrapped: Callable[[dict[str, Any], Any], Any] = emf_sink().metrics.log_metrics(
        handler, capture_cold_start_metric=True
    )
    return wrapped
