"""One decorator for every RPC, unary or streaming: domain errors become their status codes.

Anything unexpected becomes INTERNAL with a generic message and its traceback in the log: never
UNKNOWN, never a traceback to the caller.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Never, TypeVar, overload

import grpc

from ingestor.errors import (
    Backpressure,
    BatchIdReused,
    CategoryLimitError,
    ConfigConflict,
    DiskFull,
    FeatureOff,
    IngestorError,
    InvalidArgument,
    JournalError,
    ShuttingDown,
    SubscriberDropped,
    TooManySubscribers,
)

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[IngestorError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    CategoryLimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    TooManySubscribers: grpc.StatusCode.RESOURCE_EXHAUSTED,
    SubscriberDropped: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ConfigConflict: grpc.StatusCode.FAILED_PRECONDITION,
    BatchIdReused: grpc.StatusCode.FAILED_PRECONDITION,
    FeatureOff: grpc.StatusCode.FAILED_PRECONDITION,
    Backpressure: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DiskFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    JournalError: grpc.StatusCode.UNAVAILABLE,
    ShuttingDown: grpc.StatusCode.UNAVAILABLE,
}
INTERNAL_MESSAGE = "internal error in the ingestor"
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"
"""gRPC's own trailer for "try again in this many milliseconds" (gRFC A6). Sent with Backpressure
only: it is what tells a full queue (wait a little) from a full disk or dictionary (wait for an operator)."""

Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Context = TypeVar("Context", bound="grpc.aio.ServicerContext[Any, Any]")
Result = TypeVar("Result")


def status_code(error: Exception) -> grpc.StatusCode | None:
    """The status code a caller gets for ``error``; None for an error that is not the caller's to know."""
    for kind in type(error).__mro__:
        code = STATUS_CODES.get(kind)
        if code is not None:
            return code
    return None


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: Exception, rpc: str) -> Never:
    """End the call with the status of ``error``."""
    code = status_code(error)
    if code is None:
        log.error("%s failed", rpc, exc_info=error)
        await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    if isinstance(error, Backpressure):
        context.set_trailing_metadata(((RETRY_PUSHBACK_KEY, str(round(error.retry_after_s * 1000))),))
    await context.abort(code, str(error))


@overload
def rpc_errors(
    method: Callable[[Servicer, Request, Context], AsyncIterator[Result]],
) -> Callable[[Servicer, Request, Context], AsyncIterator[Result]]: ...


@overload
def rpc_errors(
    method: Callable[[Servicer, Request, Context], Coroutine[Any, Any, Result]],
) -> Callable[[Servicer, Request, Context], Coroutine[Any, Any, Result]]: ...


def rpc_errors(method: Callable[[Any, Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """Wrap a servicer method so that what it raises ends the call with the right status.

    A streaming method stays an async generator (grpc and the interceptors tell the kinds apart),
    and an error after some messages were sent still ends the stream with its status.
    """
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def streaming(servicer: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                async for message in method(servicer, request, context):
                    yield message
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await abort_with(context, error, method.__name__)

        return streaming

    @functools.wraps(method)
    async def unary(servicer: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(servicer, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_with(context, error, method.__name__)

    return unary
