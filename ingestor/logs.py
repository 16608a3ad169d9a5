"""Structured logs: one JSON object a line, carrying the request id of the call being served."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

request_id: ContextVar[str | None] = ContextVar("ingestor_request_id", default=None)
"""The x-request-id of the call this task serves (set by the server's interceptor)."""
trace_id: ContextVar[str | None] = ContextVar("ingestor_trace_id", default=None)
"""The W3C trace id of the call this task serves, from its ``traceparent`` metadata."""


class JsonLineFormatter(JsonFormatter):
    """``{"time", "level", "logger", "message", ...extra, "request_id"?, "trace_id"?, "error"?}`` on one line.

    ``extra`` keys of a log call become keys of the line; a traceback goes to ``error``, to the
    log and never to a caller.
    """

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "error"},
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)
        current = request_id.get()
        if current:
            log_data["request_id"] = current
        trace = trace_id.get()
        if trace:
            log_data["trace_id"] = trace


def configure_logging(level: str) -> None:
    """Send every log record to stdout as JSON."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
