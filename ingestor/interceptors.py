"""Server interceptors: who may call, which request a call belongs to, and malformed messages.

- :class:`TokenAuthInterceptor` requires ``authorization: Bearer <token>`` on IngestorService calls
  (constant-time comparison); health and reflection stay open. Missing or wrong is UNAUTHENTICATED,
  answered from the metadata alone, before any of the request is received or decoded.
- :class:`CallContextInterceptor` runs each call with its ``x-request-id`` and the trace id of its
  W3C ``traceparent`` in the log context, logs its outcome as JSON (and hands it to an observer:
  the metrics), and turns a request that is not valid protobuf into INVALID_ARGUMENT instead of the
  UNKNOWN grpcio answers by default.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from ingestor import logs

log = logging.getLogger("ingestor.calls")

PROTECTED_PREFIX = "/ingestor.v1.IngestorService/"
"""Only the service's own methods need the token: health checks and reflection stay open."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
"""W3C Trace Context: version-trace_id-parent_id-flags; the all-zero ids are invalid."""

CallObserver = Callable[[str, str, float], None]
"""Told each call's method (short name), status code name and duration in seconds."""

if TYPE_CHECKING:  # grpc's classes are generic in their stubs only
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]
    Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


def _metadata_value(details: grpc.HandlerCallDetails, key: str) -> str | None:
    for name, value in details.invocation_metadata or ():
        if name == key:
            return value if isinstance(value, str) else None
    return None


def _refusal(code: grpc.StatusCode, message: str, response_streaming: bool) -> Handler:
    """A handler that answers ``code`` at once and never reads the request.

    It declares a request stream, whatever the method's shape: grpc then hands it the stream
    unread instead of first receiving and deserialising the whole message, so a refused caller
    costs no more than HTTP/2 flow control lets it send. On the wire a unary request is a stream
    of one message, so the caller sees the same answer either way.
    """

    async def refuse(requests: AsyncIterator[Any], context: Context) -> Any:
        await context.abort(code, message)

    async def refuse_streaming(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse_streaming)
    return grpc.stream_unary_rpc_method_handler(refuse)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)  # a lookup by name: nothing is read yet
        if handler is None or not handler_call_details.method.startswith(PROTECTED_PREFIX):
            return handler
        given = _metadata_value(handler_call_details, "authorization") or ""
        if hmac.compare_digest(given.encode(), self._expected):
            return handler
        problem = "a bearer token is required" if not given else "the bearer token is not valid"
        return _refusal(grpc.StatusCode.UNAUTHENTICATED, problem, handler.response_streaming)


class _Malformed:
    """Stands in for a request that did not parse, so the handler can answer INVALID_ARGUMENT."""


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        if deserializer is None:
            return raw
        try:
            return deserializer(raw)
        except DecodeError:
            return _Malformed()

    return deserialize


class CallContextInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, observe: CallObserver | None = None) -> None:
        self._observe = observe

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        given = _metadata_value(handler_call_details, "x-request-id")
        traceparent = _TRACEPARENT.fullmatch(_metadata_value(handler_call_details, "traceparent") or "")
        call = _Call(
            handler_call_details.method,
            given if given and _REQUEST_ID.fullmatch(given) else None,
            traceparent.group(1) if traceparent else None,
            self._observe,
        )
        return _in_call_context(handler, call)


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    request_id: str | None
    trace_id: str | None
    observe: CallObserver | None

    def enter(self) -> float:
        """Set the call's log context (in the call's own task); the time it started."""
        logs.request_id.set(self.request_id)
        logs.trace_id.set(self.trace_id)
        return time.perf_counter()

    def ended(self, context: Context, started: float) -> None:
        code = context.code() or grpc.StatusCode.OK
        code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.OK
        seconds = time.perf_counter() - started
        fields = {"method": self.method, "code": code.name, "duration_ms": round(seconds * 1000, 3)}
        level = logging.DEBUG if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else logging.INFO
        log.log(level, "rpc", extra=fields)
        if self.observe is not None:
            self.observe(self.method.rsplit("/", 1)[-1], code.name, seconds)


def _in_call_context(handler: Handler, call: _Call) -> Handler:
    """``handler`` with its behaviour run in the call's context and logged; a request that does
    not parse reaches it as :class:`_Malformed`."""
    serializer = handler.response_serializer
    # Reflection, and calls refused before their request is read: their messages are left to the
    # handler, only the call is logged.
    if handler.stream_stream is not None:
        behavior = _streaming(handler.stream_stream, call)
        return grpc.stream_stream_rpc_method_handler(behavior, handler.request_deserializer, serializer)
    if handler.stream_unary is not None:
        behavior = _unary(handler.stream_unary, call)
        return grpc.stream_unary_rpc_method_handler(behavior, handler.request_deserializer, serializer)
    deserializer = _tolerant(handler.request_deserializer)
    if handler.unary_stream is not None:
        behavior = _streaming(handler.unary_stream, call)
        return grpc.unary_stream_rpc_method_handler(behavior, deserializer, serializer)
    if handler.unary_unary is not None:
        behavior = _unary(handler.unary_unary, call)
        return grpc.unary_unary_rpc_method_handler(behavior, deserializer, serializer)
    return handler


async def _abort_malformed(context: Context, method: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request to {method} is not a valid message")


def _unary(behavior: Callable[..., Awaitable[Any]], call: _Call) -> Callable[..., Any]:
    async def serve(request: Any, context: Context) -> Any:
        # Each call runs in a task of its own, so this does not leak into other calls.
        started = call.enter()
        try:
            if isinstance(request, _Malformed):
                await _abort_malformed(context, call.method)
            return await behavior(request, context)
        finally:
            call.ended(context, started)

    return serve


def _streaming(behavior: Callable[..., Any], call: _Call) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        # Handlers that answer through context.write() (health's Watch) are coroutines.
        return _unary(behavior, call)

    async def serve(request: Any, context: Context) -> AsyncIterator[Any]:
        # Each call runs in a task of its own, so this does not leak into other calls.
        started = call.enter()
        try:
            if isinstance(request, _Malformed):
                await _abort_malformed(context, call.method)
            async for message in behavior(request, context):
                yield message
        finally:
            call.ended(context, started)

    return serve
