"""422 answers in FastAPI's usual shape: built for one input, and safe when the input held NaN or an infinity.

FastAPI echoes each bad ``input`` back, and Python's JSON reader accepts the bare tokens ``NaN`` and
``Infinity``; JSON has no such numbers, so FastAPI's own handler fails to encode them (a 500). Here
they are echoed as the strings the client sent.
"""

from __future__ import annotations

import math

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    return value


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _json_safe(jsonable_encoder(error.errors()))}, status_code=422)


def request_error(
    loc: tuple[str | int, ...], msg: str, value: object, kind: str = "value_error"
) -> RequestValidationError:
    """A 422 about one input, in FastAPI's shape: ``loc`` says where (``("query", "window")``)."""
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg, "input": value}])
