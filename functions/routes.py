"""The public HTTP API under /api/v1."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import orjson
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from functions.client import IngestorClient
from functions.errors import TooManyStreams
from functions.filters import CATEGORY_PATTERN, CategoryParam, SinceParam, UntilParam, reading_query
from functions.links import next_link
from functions.paging import Cursor, Direction, PageTokenError, decode_page_token, encode_page_token
from functions.processing import (
    EXTRA_STATS,
    TooManyGroups,
    aggregate,
    aggregate_by_category,
    aggregate_records,
    processed_records,
)
from functions.readings import raw_records
from functions.settings import FunctionSettings, get_settings
from functions.sse import sse_events
from functions.streams import OPEN_STREAMS, EventStreamResponse
from functions.writes import TooLarge, parse_readings, readings_request_body_schema

router = APIRouter(prefix="/api/v1")


class HealthResponse(BaseModel):
    status: str = Field(examples=["healthy"])


class MessageResponse(BaseModel):
    message: str = Field(examples=["Data ingestion started"])


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


class StatusResponse(BaseModel):
    running: bool = Field(examples=[True])
    total_ingested: int = Field(description="Readings ever stored; always buffered + evicted", examples=[1500])
    buffered: int = Field(examples=[1000])
    evicted: int = Field(examples=[500])
    capacity: int = Field(examples=[1000])
    rate_hz: float = Field(description="Rate of the current (or last) run", examples=[1.0])
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


class ErrorResponse(BaseModel):
    detail: str = Field(examples=["the ingestor is unavailable"])


NO_ROOM: dict[int | str, dict[str, object]] = {
    507: {"model": ErrorResponse, "description": "The ingestor has no room for more categories in use"}
}

INGESTOR_ERRORS: dict[int | str, dict[str, object]] = {
    503: {"model": ErrorResponse, "description": "The ingestor cannot be reached"},
    504: {"model": ErrorResponse, "description": "The ingestor did not answer in time"},
}

MAX_RAW_LIMIT = 10_000


# Dependencies are coroutines: FastAPI runs a plain function dependency in its worker thread pool,
# a hand-off to another thread and back on every request.
async def current_settings() -> FunctionSettings:
    return get_settings()


Settings = Annotated[FunctionSettings, Depends(current_settings)]


async def get_client(settings: Settings) -> IngestorClient:
    return IngestorClient(settings)


Client = Annotated[IngestorClient, Depends(get_client)]


def json_response(content: object, status_code: int = 200) -> Response:
    """Encode with orjson: several times faster than the standard encoder on thousands of rows."""
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


@router.get("/health", response_model=HealthResponse, summary="Liveness of the function")
async def health() -> HealthResponse:
    """Answers without touching the ingestor."""
    return HealthResponse(status="healthy")


@router.post(
    "/start-ingestion",
    response_model=MessageResponse,
    responses={
        400: {"model": ErrorResponse, "description": "The body could not be read as JSON"},
        409: {"model": ErrorResponse, "description": "Running with another configuration"},
        **NO_ROOM,
        **INGESTOR_ERRORS,
    },
)
async def start_ingestion(client: Client, config: Annotated[StartConfig | None, Body()] = None) -> MessageResponse:
    """Start generating readings, with the ingestor's defaults or the configuration in the optional body.
    Idempotent: a generator running with the same (or no) configuration is left as it is."""
    if config is None:
        started = await client.start_ingestion()
    else:
        started = await client.start_ingestion(
            rate_hz=config.rate_hz, categories=config.categories or (), seed=config.seed
        )
    return MessageResponse(message="Data ingestion started" if started else "Data ingestion already running")


@router.post("/stop-ingestion", response_model=MessageResponse, responses=INGESTOR_ERRORS)
async def stop_ingestion(client: Client) -> MessageResponse:
    """Stop generating readings, keeping the buffered ones. Idempotent."""
    stopped = await client.stop_ingestion()
    return MessageResponse(message="Data ingestion stopped" if stopped else "Data ingestion already stopped")


RAW_DATA_HEADERS = {
    "Link": {
        "description": 'The next page, when there is one: `<...page_token=...>; rel="next"` (RFC 8288)',
        "schema": {"type": "string"},
    }
}


@router.get(
    "/raw-data",
    response_model=list[RawReading],
    responses={
        200: {"headers": RAW_DATA_HEADERS},
        400: {"model": ErrorResponse, "description": "page_token altered, or issued for other filters"},
        **INGESTOR_ERRORS,
    },
)
async def raw_data(
    request: Request,
    client: Client,
    settings: Settings,
    limit: Annotated[int, Query(ge=1, le=MAX_RAW_LIMIT, description="Page size: readings per page")] = 1000,
    category: CategoryParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    page_token: Annotated[
        str | None, Query(description='From the `rel="next"` Link of the previous page', max_length=200)
    ] = None,
) -> Response:
    """Readings oldest first. Without ``since``, the newest ``limit`` matches, and the next page the
    ones before them; with ``since``, the oldest ``limit`` matches at or after it, and the next page
    the ones after them. The next page is announced in a ``Link: <...>; rel="next"`` header."""
    query = reading_query(category, since, until)
    key = settings.page_token_key()
    direction = Direction.BACKWARD if query.since_ns is None else Direction.FORWARD
    cursor = None
    if page_token:
        try:
            cursor = decode_page_token(page_token, query.digest(), key)
        except PageTokenError as error:
            raise HTTPException(400, str(error)) from None
    if direction is Direction.FORWARD:
        readings, next_sequence = await client.select_readings(
            query, limit=limit, after_sequence=cursor.sequence if cursor else 0, oldest_first=True
        )
    else:
        readings, next_sequence = await client.select_readings(
            query, limit=limit, before_sequence=cursor.sequence if cursor else None
        )
    response = json_response(raw_records(readings))
    if next_sequence is not None:
        token = encode_page_token(Cursor(direction, next_sequence), query.digest(), key)
        response.headers["Link"] = next_link(request, token)
    return response


MAX_PROCESSED_OBJECTS = 10_000
# At most 100 digits: Python refuses to convert a string of more than 4,300 digits to an int (a
# ValueError, a 500 with a traceback), and anything past 5 digits is longer than a day anyway.
WINDOW_PATTERN = r"^[1-9][0-9]{0,99}(s|m|h|d)$"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class WindowedStats(CategoryStats):
    """With ``window``, ``stats`` or both: the original four keys, then these, then the stats asked for."""

    window_start: str | None = Field(
        None, description="Start of the tumbling window (with window=)", examples=["2024-01-20T10:00:00.000000Z"]
    )
    window_end: str | None = Field(
        None, description="End of the window, exclusive (with window=)", examples=["2024-01-20T10:01:00.000000Z"]
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


def _validation_error(loc: tuple[str | int, ...], msg: str, value: object) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def window_length_ns(window: str) -> int:
    seconds = int(window[:-1]) * _UNIT_SECONDS[window[-1]]
    if not 1 <= seconds <= 86_400:
        raise _validation_error(("query", "window"), "window must be between 1s and 1d", window)
    return seconds * 1_000_000_000


def parse_stats(stats: str) -> list[str]:
    names = list(dict.fromkeys(name.strip() for name in stats.split(",") if name.strip()))
    unknown = [name for name in names if name not in EXTRA_STATS]
    if unknown:
        raise _validation_error(
            ("query", "stats"),
            f"unknown statistics {', '.join(unknown)}; allowed: {', '.join(EXTRA_STATS)}",
            stats,
        )
    return names


@router.get(
    "/processed-data",
    response_model=list[CategoryStats] | list[WindowedStats],
    responses=INGESTOR_ERRORS,
)
async def processed_data(
    client: Client,
    category: CategoryParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    window: Annotated[
        str | None,
        Query(pattern=WINDOW_PATTERN, description="Tumbling event-time windows aligned to the epoch, 1s to 1d"),
    ] = None,
    stats: Annotated[
        str | None,
        Query(description=f"Extra statistics, comma-separated: {', '.join(EXTRA_STATS)}", examples=["min,max,p99"]),
    ] = None,
) -> Response:
    """Mean, count and latest event time per category over every buffered (matching) reading, sorted
    by category; with ``window``, per window and category, sorted by window then category; with
    ``stats``, the extra statistics after the original four keys."""
    query = reading_query(category, since, until)
    window_ns = window_length_ns(window) if window else None
    extra = parse_stats(stats) if stats is not None else []
    if query.selects_all:
        readings = await client.export_readings()
    else:
        readings, _ = await client.select_readings(query)
    if window_ns is None and not extra:
        return json_response(processed_records(aggregate_by_category(readings)))
    try:
        aggregates = aggregate(readings, window_ns=window_ns, stats=extra, max_groups=MAX_PROCESSED_OBJECTS)
    except TooManyGroups as error:
        raise _validation_error(
            ("query", "window"),
            f"{error}: ask for a wider window or a narrower range (category, since, until)",
            window,
        ) from None
    return json_response(aggregate_records(aggregates, extra))


@router.get("/status", response_model=StatusResponse, response_model_exclude_unset=True, responses=INGESTOR_ERRORS)
async def status(client: Client) -> StatusResponse:
    """The ingestor's generator state and buffer accounting, and the configuration of the current (or
    last) run: ``rate_hz`` always, ``categories`` and ``seed`` when it was started with a body; in
    durable mode also ``durable`` and the data directory's size."""
    current = asdict(await client.get_status())
    configured = current.pop("configured")
    categories, seed = current.pop("categories"), current.pop("seed")
    durable, data_dir_bytes = current.pop("durable"), current.pop("data_dir_bytes")
    generator_error = current.pop("generator_error")
    if configured:
        current.update(categories=list(categories), seed=seed)
    if durable:
        current.update(durable=True, data_dir_bytes=data_dir_bytes)
    if generator_error:
        current.update(generator_error=generator_error)
    return StatusResponse(**current)


class AcceptedResponse(BaseModel):
    accepted: int = Field(description="Readings stored", examples=[2])


class ValidationErrorItem(BaseModel):
    loc: list[str | int] = Field(examples=[["body", 1, "value"]])
    msg: str = Field(examples=["Input should be a valid number"])
    type: str = Field(examples=["float_type"])


class ValidationErrorResponse(BaseModel):
    detail: list[ValidationErrorItem]


@router.post(
    "/readings",
    status_code=202,
    response_model=AcceptedResponse,
    openapi_extra={"requestBody": readings_request_body_schema()},
    responses={
        400: {"model": ErrorResponse, "description": "The body could not be read as JSON"},
        413: {"model": ErrorResponse, "description": "Over 2 MiB or over 10,000 readings"},
        422: {"model": ValidationErrorResponse, "description": "Bad items; each one's index is in loc"},
        **NO_ROOM,
        **INGESTOR_ERRORS,
    },
)
async def write_readings(
    request: Request,
    client: Client,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=r"^[\x21-\x7e]{1,128}$",
            description="Makes a retry safe: a batch with a key already stored is acknowledged again, "
            "not stored twice (keys are remembered for INGESTOR_BATCH_ID_WINDOW batches)",
            examples=["sensor-17-batch-000042"],
        ),
    ] = None,
) -> Response:
    """Store real readings, all or nothing; they show up in raw and processed data like generated ones.
    A retry with the same ``Idempotency-Key`` answers the first acknowledgement again, with
    ``Idempotent-Replayed: true``."""
    body = await request.body()  # the app's body limit (MAX_BODY_BYTES, 2 MiB) already applies
    try:
        columns = parse_readings(body)
    except TooLarge as error:
        raise HTTPException(413, str(error)) from None
    result = await client.write_readings(columns, batch_id=idempotency_key or "")
    response = json_response({"accepted": result.accepted}, 202)
    if result.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response


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


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: each `data:` a JSON array of readings (at most one burst of writes "
            'every 100 ms); `event: gap` with `data: {"missed": n}` when this client fell behind and lost n '
            'readings; `event: error` with `data: {"detail": "..."}` when the stream ends (shutdown, or a '
            "client that stayed behind too long)",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA, "example": STREAM_EXAMPLE}},
        },
        503: {
            "model": ErrorResponse,
            "description": "The ingestor cannot be reached, or too many streams are open (with Retry-After)",
        },
        504: INGESTOR_ERRORS[504],
    },
)
async def stream(client: Client, settings: Settings, category: CategoryParam = None) -> StreamingResponse:
    """New readings as they arrive, live, under uvicorn. Behind API Gateway + Lambda the response is
    buffered, so it is not a live stream there. At most STREAM_MAX_CLIENTS streams at once per
    process: beyond, 503 with Retry-After."""
    query = reading_query(category, None, None)
    if not OPEN_STREAMS.acquire(settings.stream_max_clients):
        raise TooManyStreams(f"{settings.stream_max_clients} streams are open, the most this server serves")
    try:
        batches = await client.watch_readings(query.categories)
    except BaseException:
        OPEN_STREAMS.release()
        raise
    return EventStreamResponse(
        sse_events(batches),
        slots=OPEN_STREAMS,
        write_timeout_s=settings.stream_stall_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
