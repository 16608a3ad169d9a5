"""W3C Trace Context: the trace a request belongs to, continued from its ``traceparent`` or begun.

Each request gets a span id of its own; its ``traceparent`` (the request's trace id, this span as
parent) goes to the ingestor as gRPC metadata, and the trace id into every log line of the request,
in both processes. On Lambda the invocation's X-Ray trace id is logged too.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    """This request's own span: the parent of what it calls."""
    flags: str = "01"
    xray_trace_id: str | None = None

    @property
    def traceparent(self) -> str:
        """The header (or metadata) that continues this trace in a call this request makes."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


current: ContextVar[TraceContext | None] = ContextVar("function_trace", default=None)
"""The trace of the request this task serves (set by the request middleware)."""


def continue_trace(traceparent: str | None, xray_trace_id: str | None = None) -> TraceContext:
    """The context of a request that came with ``traceparent`` (None or malformed: a new trace).

    Version ``ff`` and all-zero ids are invalid (W3C Trace Context, section 3.2); a future version
    is read as version 00 is, from its first four fields.
    """
    span_id = secrets.token_hex(8)
    given = (traceparent or "").strip()
    match = _TRACEPARENT.match(given)
    if match is not None:
        version, trace_id, parent_id, flags = match.groups()
        valid = version != "ff" and trace_id != _INVALID_TRACE_ID and parent_id != _INVALID_SPAN_ID
        exact = version != "00" or len(given) == 55
        if valid and exact:
            return TraceContext(trace_id, span_id, flags, xray_trace_id)
    return TraceContext(secrets.token_hex(16), span_id, "01", xray_trace_id)
