"""Readings pushed over HTTP: size limits and all-or-nothing validation into columns. No I/O here."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from functions.readings import Readings
from functions.schemas import MAX_READINGS_PER_WRITE, NewReading
from functions.timestamps import to_ns
from functions.validation import request_error

_ITEMS = TypeAdapter(list[NewReading])


class TooLarge(Exception):
    """The request is over a size limit (413); the message says which."""


def parse_readings(body: bytes) -> Readings:
    """Validate every item; RequestValidationError (each bad item's index in ``loc``) or TooLarge."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise request_error(("body", error.pos), "JSON decode error", {}, kind="json_invalid") from None
    if isinstance(items, list) and len(items) > MAX_READINGS_PER_WRITE:
        raise TooLarge(f"at most {MAX_READINGS_PER_WRITE} readings a request, got {len(items)}")
    try:
        readings = _ITEMS.validate_python(items)
    except ValidationError as error:
        raise RequestValidationError(
            [{**detail, "loc": ("body", *detail["loc"])} for detail in error.errors(include_url=False)]
        ) from None
    names = [reading.category for reading in readings]
    dictionary = list(dict.fromkeys(names))
    index = {name: code for code, name in enumerate(dictionary)}
    return Readings(
        np.fromiter(
            (to_ns(datetime.fromisoformat(r.timestamp)) for r in readings), dtype=np.int64, count=len(readings)
        ),
        np.fromiter((r.value for r in readings), dtype=np.float64, count=len(readings)),
        np.fromiter((index[name] for name in names), dtype=np.uint16, count=len(readings)),
        dictionary,
    )
