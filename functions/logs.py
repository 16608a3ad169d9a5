"""Structured logs: one JSON object a line, carrying the id of the request being served."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter

from functions import tracing

# A context variable, not shared state: each request's task sees only its own id. The HTTP
# middleware sets it; the log formatter and the gRPC client (x-request-id metadata) read it.
request_id: ContextVar[str | None] = ContextVar("function_request_id", default=None)

_LOGGER = "functions"


class JsonFormatter(LibraryJsonFormatter):
    """``{"time", "level", "logger", "message", "error"?, "request_id"?, "trace_id"?, "xray_trace_id"?,
    ...fields}`` on one line.

    ``fields`` is the extra that log calls pass (``extra={"fields": {...}}``); its keys join the
    line's. uvicorn's ``color_message`` extra repeats the message with terminal colours: left out.
    """

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "error"},
            reserved_attrs=[*RESERVED_ATTRS, "fields", "color_message"],
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        # Tracebacks (exc_info, as "error") go to the log, never to a caller.
        super().add_fields(log_data, record, message_dict)
        current = request_id.get()
        if current:
            log_data["request_id"] = current
        trace = tracing.current.get()
        if trace is not None:
            log_data["trace_id"] = trace.trace_id
            if trace.xray_trace_id:
                log_data["xray_trace_id"] = trace.xray_trace_id
        log_data.update(getattr(record, "fields", {}))


def configure_logging(level: str) -> None:
    """Log the ``functions`` loggers to stdout as JSON, once per process."""
    logger = logging.getLogger(_LOGGER)
    logger.setLevel(level.upper())
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False


def configure_server_logging() -> None:
    """uvicorn's own lines as JSON, and no access line from uvicorn.

    uvicorn sets up its loggers before it imports the app. Its access line repeats what the app
    logs for each request, in another format and with the full query string, which may carry a
    token: that logger loses its handlers, as uvicorn's own ``--no-access-log`` does (uvicorn then
    skips access logging altogether). Handlers that format with uvicorn's own (plain text)
    formatters get the JSON one, writing where they wrote; a configuration of the operator's own
    (``--log-config``) keeps its formatters. Without uvicorn (on Lambda) only the access logger is
    touched, and it has nothing to lose.
    """
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        for handler in logging.getLogger(name).handlers:
            if type(handler.formatter).__module__.startswith("uvicorn."):
                handler.setFormatter(JsonFormatter())
