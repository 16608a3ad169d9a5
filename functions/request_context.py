"""Request ids, traces, metrics and the access log: what every request gets around it.

The id is taken from a well-formed ``X-Request-ID`` or made up, returned in the response's
``X-Request-ID``, passed on to the ingestor, and carried by every log line of the request; so is
the trace (``functions/tracing.py``). When it ends, the request is measured (``functions/telemetry.py``:
by route template, to EMF when Mangum runs it, to Prometheus otherwise) and logged in one JSON line.

Only the method, the path, the status and the time are logged: never headers or query strings,
which may carry tokens.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from functions import logs, telemetry, tracing
from functions.api import route_templates

log = logging.getLogger("functions.access")

_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: bool = True) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get("x-request-id")
        request_id = given if given and _WELL_FORMED.fullmatch(given) else uuid.uuid4().hex
        on_lambda = "aws.event" in scope
        # The Lambda runtime sets the invocation's X-Ray trace id in the environment.
        xray = os.environ.get("_X_AMZN_TRACE_ID") if on_lambda else None
        token = logs.request_id.set(request_id)
        trace_token = tracing.current.set(tracing.continue_trace(headers.get("traceparent"), xray))
        measure = telemetry.Measure(_sink(on_lambda) if self._metrics else telemetry.NoSink())
        measure_token = telemetry.current.set(measure)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            fields = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            }
            log.info("request", extra={"fields": fields})
            measure.sink.request(
                route_template(scope), scope["method"], telemetry.status_class(status), seconds, measure
            )
            telemetry.current.reset(measure_token)
            tracing.current.reset(trace_token)
            logs.request_id.reset(token)


_API_TEMPLATES = route_templates()


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/raw-data``, ``/static/{path:path}``), never the
    raw path; ``unmatched`` when no route took the request (a 404, or refused before routing)."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    path = _API_TEMPLATES.get(id(route), getattr(route, "path", None))
    return path if isinstance(path, str) and path else "unmatched"


def _sink(on_lambda: bool) -> telemetry.Sink:
    # Imported here: each process loads the library of its own sink only.
    if on_lambda:
        from functions.lambda_metrics import emf_sink

        return emf_sink()
    from functions.prometheus_metrics import prometheus_sink

    return prometheus_sink()
