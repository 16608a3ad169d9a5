"""Failures and their answers: gRPC status codes to exceptions, and exceptions to HTTP statuses.

The client raises the exceptions of :func:`ingestor_error` for every call that fails, streams
included; the app answers each with the status of ``HTTP_STATUS`` and ``{"detail": str(error)}``,
so a handler never catches one to choose a status. ``str(error)`` is safe to show: it says what
failed and never carries an address, a token or a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
from fastapi import Request
from fastapi.responses import JSONResponse, Response

RETRY_AFTER_S = 5
"""What a client turned away for lack of stream slots, here or at the ingestor, is told to wait."""
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"
"""The trailer with which the ingestor says "try again in this many milliseconds" (gRPC's own, gRFC A6)."""


class IngestorError(Exception):
    """A call to the ingestor failed."""


class IngestorUnavailable(IngestorError):
    """The ingestor cannot be reached."""


class IngestorTimeout(IngestorError):
    """The ingestor did not answer before the deadline."""


class IngestorRejected(IngestorError):
    """The ingestor refused the request (bad input, limits)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class IngestorConflict(IngestorRejected):
    """The request contradicts what the ingestor is doing (a start with another configuration)."""


class IngestorFull(IngestorRejected):
    """The ingestor has no room for what the request adds (its category dictionary is full)."""


class IngestorBusy(IngestorRejected):
    """The ingestor serves as many live streams as it may."""

    retry_after_s: float = RETRY_AFTER_S


class IngestorBackedUp(IngestorBusy):
    """The ingestor's disk does not keep up: a write waited for room until its deadline, and was not stored."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_s: float) -> None:
        super().__init__(code, message)
        self.retry_after_s = retry_after_s


class KeyReused(IngestorRejected):
    """An Idempotency-Key that named other readings came with a write."""

    def __init__(self, code: grpc.StatusCode, key: str) -> None:
        super().__init__(
            code,
            f"Idempotency-Key {key!r} was used before for other readings: a retry must send the same "
            "readings, and other readings need a new key (nothing was stored)",
        )


class IngestorFailed(IngestorError):
    """The ingestor failed in a way the caller cannot fix."""


class IngestorLacksCall(IngestorFailed):
    """The ingestor does not implement the call (UNIMPLEMENTED): a version from before it."""


class TooManyStreams(Exception):
    """This process serves as many event streams as it may (STREAM_MAX_CLIENTS)."""


_REJECTIONS: dict[grpc.StatusCode, type[IngestorRejected]] = {
    grpc.StatusCode.INVALID_ARGUMENT: IngestorRejected,
    grpc.StatusCode.OUT_OF_RANGE: IngestorRejected,
    grpc.StatusCode.ALREADY_EXISTS: IngestorRejected,
    grpc.StatusCode.FAILED_PRECONDITION: IngestorConflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: IngestorFull,
}


def ingestor_error(
    code: grpc.StatusCode,
    details: str | None,
    *,
    live: bool = False,
    retry_pushback_ms: int | None = None,
    batch_id: str = "",
) -> IngestorError:
    """The exception for a call that ended with ``code`` and ``details``.

    On a live stream (``live``, WatchReadings) RESOURCE_EXHAUSTED means that no subscriber slot is
    free, a wait-and-retry. Elsewhere it comes from a write: with a retry pushback (the trailer
    ``grpc-retry-pushback-ms``) the disk does not keep up, a wait-and-retry; without, something is
    full (the category dictionary, the disk), which waiting alone does not cure. FAILED_PRECONDITION
    on a write with a ``batch_id`` means that the id named other readings.
    """
    if code is grpc.StatusCode.UNAVAILABLE:
        return IngestorUnavailable("the ingestor is unavailable")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return IngestorTimeout("the ingestor did not answer in time")
    if live and code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return IngestorBusy(code, details or code.name)
    if retry_pushback_ms is not None and code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return IngestorBackedUp(code, details or code.name, retry_pushback_ms / 1000)
    if batch_id and code is grpc.StatusCode.FAILED_PRECONDITION:
        return KeyReused(code, batch_id)
    rejection = _REJECTIONS.get(code)
    if rejection is not None:
        return rejection(code, details or code.name)
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return IngestorLacksCall(f"the ingestor failed ({code.name})")
    return IngestorFailed(f"the ingestor failed ({code.name})")


def rpc_error(error: grpc.aio.AioRpcError, *, live: bool = False, batch_id: str = "") -> IngestorError:
    """:func:`ingestor_error` of a failed call."""
    return ingestor_error(
        error.code(), error.details(), live=live, retry_pushback_ms=_pushback_ms(error), batch_id=batch_id
    )


def _pushback_ms(error: grpc.aio.AioRpcError) -> int | None:
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_PUSHBACK_KEY and isinstance(value, str) and value.isdigit():
            return int(value)
    return None


HTTP_STATUS: dict[type[Exception], int] = {
    IngestorError: 502,
    IngestorUnavailable: 503,
    IngestorTimeout: 504,
    IngestorRejected: 422,
    IngestorConflict: 409,
    IngestorFull: 507,
    IngestorBusy: 503,
    KeyReused: 422,
    TooManyStreams: 503,
}
"""The most specific class of an error decides (IngestorFull is 507, not IngestorRejected's 422)."""

_RETRY_LATER = (IngestorBusy, TooManyStreams)


def http_status(error: Exception) -> int:
    return next(HTTP_STATUS[kind] for kind in type(error).__mro__ if kind in HTTP_STATUS)


async def error_response(request: Request, error: Exception) -> JSONResponse:
    """``{"detail": ...}`` with the error's status, and Retry-After where waiting helps."""
    headers = None
    if isinstance(error, _RETRY_LATER):
        retry_after_s = error.retry_after_s if isinstance(error, IngestorBusy) else RETRY_AFTER_S
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
    return JSONResponse({"detail": str(error)}, status_code=http_status(error), headers=headers)


ERROR_HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    IngestorError: error_response,
    TooManyStreams: error_response,
}
"""For ``FastAPI(exception_handlers=...)``."""
