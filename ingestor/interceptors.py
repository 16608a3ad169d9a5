"""Server interceptors: who may call, which request a call belongs to, and malformed messages.

- :class:`TokenAuthInterceptor` requires ``authorization: Bearer <token>`` on IngestorService calls
  (constant-time comparison); health and reflection stay open. Missing or wrong is UNAUTHENTICATED,
  answered from the metadata alone, before any of the request is received or decoded.
- :class:`CallContextInterceptor` runs each call with its ``x-request-id`` in the log context, logs
  its outcome as JSON, and turns a request that is not valid protobuf into INVALID_ARGUMENT instead
  of the UNKNOWN grpcio answers by default.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from ingestor import logs

log = logging.getLogger("ingestor.calls")

PROTECTED_PREFIX = "/ingestor.v1.IngestorService/"
"""Only the service's own methods need the token: health checks and reflection stay open."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

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
    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        given = _metadata_value(handler_call_details, "x-request-id")
        request_id = given if given and _REQUEST_ID.fullmatch(given) else None
        return _in_call_context(handler, handler_call_details.method, request_id)


def _in_call_context(handler: Handler, method: str, request_id: str | None) -> Handler:
    """``handler`` with its behaviour run in the call's context and logged; a request that does
    not parse reaches it as :class:`_Malformed`."""
    serializer = handler.response_serializer
    # Reflection, and calls refused before their request is read: their messages are left to the
    # handler, only the call is logged.
    if handler.stream_stream is not None:
        behavior = _streaming(handler.stream_stream, method, request_id)
        return grpc.stream_stream_rpc_method_handler(behavior, handler.request_deserializer, serializer)
    if handler.stream_unary is not None:
        behavior = _unary(handler.stream_unary, method, request_id)
        return grpc.stream_unary_rpc_method_handler(behavior, handler.request_deserializer, serializer)
    deserializer = _tolerant(handler.request_deserializer)
    if handler.unary_stream is not None:
        behavior = _streaming(handler.unary_stream, method, request_id)
        return grpc.unary_stream_rpc_method_handler(behavior, deserializer, serializer)
    if handler.unary_unary is not None:
        behavior = _unary(handler.unary_unary, method, request_id)
        return grpc.unary_unary_rpc_method_handler(behavior, deserializer, serializer)
    return handler


def _log_call(method: str, context: Context, started: float) -> None:
    code = context.code() or grpc.StatusCode.OK
    code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.OK
    fields = {"method": method, "code": code.name, "duration_ms": round((time.perf_counter() - started) * 1000, 3)}
    level = logging.DEBUG if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED) else logging.INFO
    log.log(level, "rpc", extra=fields)


async def _abort_malformed(context: Context, method: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request to {method} is not a valid message")


def _unary(behavior: Callable[..., Awaitable[Any]], method: str, request_id: str | None) -> Callable[..., Any]:
    async def serve(request: Any, context: Context) -> Any:
        # Each call runs in a task of its own, so this does not leak into other calls.
        logs.request_id.set(request_id)
        started = time.perf_counter()
        try:
            if isinstance(request, _Malformed):
                await _abort_malformed(context, method)
            return await behavior(request, context)
        finally:
            _log_call(method, context, started)

    return serve


def _streaming(behavior: Callable[..., Any], method: str, request_id: str | None) -> Callable[..., Any]:
    if not inspect.isasyncgenfunction(behavior):
        # Handlers that answer through context.write() (health's Watch) are coroutines.
        return _unary(behavior, method, request_id)

    async def serve(request: Any, context: Context) -> AsyncIterator[Any]:
        # Each call runs in a task of its own, so this does not leak into other calls.
        logs.request_id.set(request_id)
        started = time.perf_counter()
        try:
            if isinstance(request, _Malformed):
                await _abort_malformed(context, method)
            async for message in behavior(request, context):
                yield message
        finally:
            _log_call(method, context, started)

    return serve
