"""The HTTP API's request and response models, and what OpenAPI says of answers the models do not cover."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from functions.filters import CATEGORY_PATTERN

MAX_READINGS_PER_WRITE = 10_000
"""Readings one POST /readings may carry; more is a 413."""
# Timestamps are stored as int64 nanoseconds.
_EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
_LATEST = datetime(2262, 4, 10, tzinfo=UTC)


class HealthResponse(BaseModel):
    status: str = Field(examples=["healthy"])


class MessageResponse(BaseModel):
    message: str = Field(examples=["Data ingestion started"])


class ErrorResponse(BaseModel):
    detail: str = Field(examples=["the ingestor is unavailable"])


class RawReading(BaseModel):
    timestamp: str = Field(description="Event time, ISO 8601 UTC", examples=["2024-01-20T10:00:00.000000Z"])
    value: float = Field(examples=[42.5])
    category: str = Field(examples=["A"])


class CategoryStats(BaseModel):
    category: str = Field(examples=["A"])
    avg_value: float = Field(description="Mean value", examples=[44.1])
    count: int = Field(description="Readings in the category", examples=[2])
    last_timestamp: str = Field(
        description="Latest event time in the category, ISO 8601 UTC", examples=["2024-01-20T10:00:02.000000Z"]
    )


class WindowedStats(CategoryStats):
    """With ``window``, ``session_gap``, ``stats`` or more: the original four keys, then these, then the
    stats asked for."""

    avg_value: float | None = Field(  # type: ignore[assignment]
        description="Mean value; with fill, an empty window's is null, 0, carried or interpolated", examples=[44.1]
    )
    last_timestamp: str | None = Field(  # type: ignore[assignment]
        description="Latest event time in the window, ISO 8601 UTC; null in an empty window (fill=) unless "
        "fill=previous carries it",
        examples=["2024-01-20T10:00:02.000000Z"],
    )
    window_start: str | None = Field(
        None,
        description="Start of the window (with window=), or a session's first reading (with session_gap=)",
        examples=["2024-01-20T10:00:00.000000Z"],
    )
    window_end: str | None = Field(
        None,
        description="End of the window, exclusive; a session's last reading plus the gap",
        examples=["2024-01-20T10:01:00.000000Z"],
    )
    closed: bool | None = Field(
        None,
        description="With grace= or emit=: window_end + grace <= the newest event time the query covers",
        examples=[True],
    )
    min: float | None = Field(None, examples=[41.2])
    max: float | None = Field(None, examples=[47.0])
    sum: float | None = Field(None, examples=[88.2])
    std: float | None = Field(None, description="Sample standard deviation; null when count < 2", examples=[3.6])
    first_timestamp: str | None = Field(
        None, description="Earliest event time", examples=["2024-01-20T10:00:00.000000Z"]
    )
    p50: float | None = Field(None, description="Median, linear interpolation", examples=[44.1])
    p90: float | None = Field(None, examples=[46.4])
    p95: float | None = Field(None, examples=[46.7])
    p99: float | None = Field(None, examples=[46.9])
    late: int | None = Field(
        None, description="Readings of the window that arrived late (after a newer event time)", examples=[0]
    )


class ArchiveStatus(BaseModel):
    archived: int = Field(description="Readings in archive files published since the ingestor started", examples=[0])
    pending: int = Field(description="Readings stored and not yet in a published file", examples=[1500])
    evicted_unarchived: int = Field(
        description="Readings evicted from the buffer before they were archived (the archive was down or behind)",
        examples=[0],
    )
    error: str | None = Field(
        None, description="Only while publishing fails: why", examples=["cannot publish to s3://bucket/readings: ..."]
    )


class StatusResponse(BaseModel):
    running: bool = Field(examples=[True])
    total_ingested: int = Field(description="Readings ever stored; always buffered + evicted", examples=[1500])
    buffered: int = Field(examples=[1000])
    evicted: int = Field(examples=[500])
    capacity: int = Field(examples=[1000])
    rate_hz: float = Field(description="Rate of the current (or last) run", examples=[1.0])
    late: int | None = Field(
        None,
        description="Only once there are late readings: readings stored with an event time older than the "
        "newest stored before them",
        examples=[3],
    )
    late_by_category: dict[str, int] | None = Field(
        None, description="Only once there are late readings: late per category in use", examples=[{"A": 3}]
    )
    categories: list[str] | None = Field(
        None,
        description="Only when the current (or last) run was started with a body: its categories",
        examples=[["A", "B"]],
    )
    seed: int | None = Field(None, description="Only when the run was started with a body: its seed", examples=[42])
    durable: bool | None = Field(None, description="Only in durable mode (INGESTOR_DATA_DIR): true", examples=[True])
    data_dir_bytes: int | None = Field(
        None, description="Only in durable mode: bytes the data directory takes on disk", examples=[18874368]
    )
    generator_error: str | None = Field(
        None,
        description="Only when the generator's last run ended by itself: why (it is logged too)",
        examples=["the generator stopped: the data directory cannot be written: disk I/O error"],
    )
    achieved_rate_hz: float | None = Field(
        None,
        description="Only while the disk holds the generator back: readings stored per second over the "
        "last 5 s, next to the configured rate_hz",
        examples=[41250.0],
    )
    generator_held_back: str | None = Field(
        None,
        description="Only while the disk holds the generator back (and for 5 s after): why; the readings "
        "that fell due meanwhile are skipped (it is logged too)",
        examples=["the disk does not keep up: the journal's queue is full"],
    )
    disk_full: bool | None = Field(
        None,
        description="Only in durable mode, while the data directory is full: true (writes are refused with 507)",
        examples=[True],
    )
    archive: ArchiveStatus | None = Field(
        None,
        description="Only when readings are archived (INGESTOR_ARCHIVE_URL)",
        examples=[{"archived": 16777216, "pending": 1200, "evicted_unarchived": 0}],
    )


class StartConfig(BaseModel):
    """How to generate readings; a field left out takes the ingestor's default."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"rate_hz": 100, "categories": ["A", "B"], "seed": 42}]}
    )

    rate_hz: float | None = Field(
        None, gt=0, le=1_000_000, allow_inf_nan=False, description="Readings per second", examples=[100]
    )
    categories: list[Annotated[str, Field(pattern=CATEGORY_PATTERN)]] | None = Field(
        None, min_length=1, max_length=64, description="Distinct names, [A-Za-z0-9_.-]{1,64}", examples=[["A", "B"]]
    )
    seed: int | None = Field(
        None,
        strict=True,
        ge=-(2**63),
        le=2**63 - 1,
        description="Makes the generated values reproducible",
        examples=[42],
    )

    @field_validator("categories")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        return value


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


class AcceptedResponse(BaseModel):
    accepted: int = Field(description="Readings stored", examples=[2])


class ValidationErrorItem(BaseModel):
    loc: list[str | int] = Field(examples=[["body", 1, "value"]])
    msg: str = Field(examples=["Input should be a valid number"])
    type: str = Field(examples=["float_type"])


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationErrorItem]


Responses = dict[int | str, dict[str, object]]

INGESTOR_ERRORS: Responses = {
    503: {"model": ErrorResponse, "description": "The ingestor cannot be reached"},
    504: {"model": ErrorResponse, "description": "The ingestor did not answer in time"},
}

NO_ROOM: Responses = {
    507: {"model": ErrorResponse, "description": "The ingestor has no room for more categories in use"}
}

NO_ROOM_TO_WRITE: Responses = {
    507: {
        "model": ErrorResponse,
        "description": "The ingestor has no room: for more categories in use, or on its data directory's disk",
    }
}

BACKED_UP: Responses = {
    503: {
        "model": ErrorResponse,
        "description": "The ingestor cannot be reached, or its disk does not keep up and nothing was stored "
        "(then with Retry-After)",
        "headers": {
            "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
        },
    }
}

NOT_JSON: Responses = {400: {"model": ErrorResponse, "description": "The body could not be read as JSON"}}

RAW_DATA_HEADERS = {
    "Link": {
        "description": 'The next page, when there is one: `<...page_token=...>; rel="next"` (RFC 8288)',
        "schema": {"type": "string"},
    },
    "Next-After-Sequence": {
        "description": "With after_sequence only: the after_sequence of the next call. Every matching reading "
        "numbered up to it was in this answer or an earlier one (or was evicted); it goes back when the "
        "ingestor started over",
        "schema": {"type": "integer", "minimum": -1},
    },
}


def readings_request_body() -> dict[str, object]:
    """The OpenAPI requestBody of POST /readings (the body is read by hand, to enforce its size first)."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "maxItems": MAX_READINGS_PER_WRITE,
                    "items": NewReading.model_json_schema(),
                },
                "example": [
                    {"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"},
                    {"timestamp": "2024-01-20T10:00:01.250000Z", "value": 43.0, "category": "B"},
                ],
            }
        },
        "description": f"Up to {MAX_READINGS_PER_WRITE} readings, at most 2 MiB (MAX_BODY_BYTES); all or nothing",
    }


SSE_EVENT_SCHEMA = {
    "description": "One Server-Sent Event",
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {
            "type": "string",
            "enum": ["message", "gap", "error"],
            "description": "message (the default), gap, or error (the last event of a stream that ends)",
        },
        "data": {
            "type": "string",
            "description": 'JSON: an array of readings, {"missed": n} in a gap event, '
            '{"detail": "..."} in an error event',
        },
    },
}

STREAM_EXAMPLE = (
    'data: [{"timestamp":"2024-01-20T10:00:00.000000Z","value":42.5,"category":"A"},'
    '{"timestamp":"2024-01-20T10:00:00.010000Z","value":44.1,"category":"B"}]\n\n'
    'event: gap\ndata: {"missed":1200}\n\n'
)
