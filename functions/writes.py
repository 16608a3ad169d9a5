"""Readings pushed over HTTP: size limits and all-or-nothing validation into columns. No I/O here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import numpy as np
import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from functions.filters import CATEGORY_PATTERN
from functions.readings import Readings
from functions.timestamps import to_ns

MAX_ITEMS = 10_000
# Timestamps are stored as int64 nanoseconds.
_EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
_LATEST = datetime(2262, 4, 10, tzinfo=UTC)


class TooLarge(Exception):
    """The request is over a size limit (413); the message says which."""


def _iso_timestamp(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PydanticCustomError("timestamp_parsing", "Input should be an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not _EARLIEST <= moment < _LATEST:
        raise PydanticCustomError("timestamp_range", "Timestamp should lie between 1677-09-22 and 2262-04-10")
    return text


class NewReading(BaseModel):
    """One reading to store. A timestamp without an offset is UTC."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"}]},
    )

    timestamp: Annotated[str, AfterValidator(_iso_timestamp)] = Field(
        description="Event time, ISO 8601; no offset means UTC", examples=["2024-01-20T10:00:00Z"]
    )
    value: float = Field(strict=True, allow_inf_nan=False, description="A finite number", examples=[42.5])
    category: str = Field(strict=True, pattern=CATEGORY_PATTERN, examples=["A"])


_ITEMS = TypeAdapter(list[NewReading])


def parse_readings(body: bytes) -> Readings:
    """Validate every item; RequestValidationError (each bad item's index in ``loc``) or TooLarge."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error", "input": {}}]
        ) from None
    if isinstance(items, list) and len(items) > MAX_ITEMS:
        raise TooLarge(f"at most {MAX_ITEMS} readings a request, got {len(items)}")
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


def readings_request_body_schema() -> dict[str, object]:
    """The OpenAPI requestBody of POST /readings (the body is read by hand, to enforce its size first)."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "maxItems": MAX_ITEMS,
                    "items": NewReading.model_json_schema(),
                },
                "example": [
                    {"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"},
                    {"timestamp": "2024-01-20T10:00:01.250000Z", "value": 43.0, "category": "B"},
                ],
            }
        },
        "description": f"Up to {MAX_ITEMS} readings, at most 2 MiB (MAX_BODY_BYTES); all or nothing",
    }
