"""What the function measures, and where it goes: Prometheus under uvicorn, CloudWatch EMF on Lambda.

Per request: a count and the latency by route template (never the raw path), method and status
class; per call to the ingestor: the latency, and failures by gRPC status code; readings returned
and written. The request middleware picks the sink for each request (EMF when Mangum runs it, in
``functions/lambda_metrics.py``; Prometheus otherwise, in ``functions/prometheus_metrics.py``) and
routes count their readings on the request's :class:`Measure`; the client times each call to the
ingestor with :func:`measured`. Neither library is imported before it is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

import grpc

from functions.errors import IngestorTimeout, IngestorUnavailable


class Sink(Protocol):
    def request(self, route: str, method: str, status_class: str, seconds: float, measure: Measure) -> None:
        """A request ended."""

    def ingestor_call(self, rpc: str, code: str, seconds: float) -> None:
        """A call to the ingestor ended with ``code`` (the gRPC status code's name)."""


class NoSink:
    """Where measures go when metrics are off (METRICS=false): nowhere."""

    def request(self, route: str, method: str, status_class: str, seconds: float, measure: Measure) -> None:
        pass

    def ingestor_call(self, rpc: str, code: str, seconds: float) -> None:
        pass


@dataclass(slots=True)
class Measure:
    """What one request counts as it runs."""

    sink: Sink
    readings_returned: int = 0
    readings_written: int = 0


current: ContextVar[Measure | None] = ContextVar("function_measure", default=None)
"""The measure of the request this task serves (set by the request middleware)."""


def readings_returned(count: int) -> None:
    """Readings the current request answered with."""
    measure = current.get()
    if measure is not None:
        measure.readings_returned += count


def readings_written(count: int) -> None:
    """Readings the current request stored at the ingestor."""
    measure = current.get()
    if measure is not None:
        measure.readings_written += count


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, ...: the label of a status code."""
    return f"{status // 100}xx"


@contextmanager
def measured(rpc: str) -> Iterator[None]:
    """Time a call to the ingestor (connecting included) for the current request's metrics, with the
    status code it ended with: a connection that never came is UNAVAILABLE."""
    measure = current.get()
    started = time.perf_counter()
    code = "OK"
    try:
        yield
    except grpc.aio.AioRpcError as error:
        code = error.code().name
        raise
    except IngestorUnavailable:
        code = "UNAVAILABLE"
        raise
    except (TimeoutError, IngestorTimeout):
        code = "DEADLINE_EXCEEDED"
        raise
    except asyncio.CancelledError:
        code = "CANCELLED"
        raise
    except BaseException:
        code = "UNKNOWN"
        raise
    finally:
        if measure is not None:
            measure.sink.ingestor_call(rpc, code, time.perf_counter() - started)
