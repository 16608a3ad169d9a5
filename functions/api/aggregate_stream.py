"""GET /stream/aggregates: window aggregates as Server-Sent Events, as they change or as windows close."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from functions.aggregate_params import WINDOW_PATTERN, GraceParam, StatsParam, StepParam, parse_stats, window_spec
from functions.deps import Client, Settings
from functions.errors import TooManyStreams
from functions.filters import CategoryParam, reading_query
from functions.readings import Readings
from functions.schemas import INGESTOR_ERRORS, SSE_EVENT_SCHEMA, ErrorResponse
from functions.sse import BACKLOG_READINGS, Batch, sse_events
from functions.streams import OPEN_STREAMS, EventStreamResponse
from functions.window_feed import WindowFeed

router = APIRouter()

FeedEmitParam = Annotated[
    Literal["update", "final"],
    Query(description="update: an event whenever windows change (at most every 100 ms); final: when windows close"),
]
FEED_EXAMPLE = (
    "id: 1705744810000000000\n"
    'data: [{"category":"A","avg_value":42.5,"count":10,"last_timestamp":"2024-01-20T10:00:09.900000Z",'
    '"window_start":"2024-01-20T10:00:00.000000Z","window_end":"2024-01-20T10:00:10.000000Z","closed":true}]\n\n'
)


@router.get(
    "/stream/aggregates",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: each `data:` a JSON array of window objects shaped as "
            "/processed-data's (with `closed`), its `id:` the newest event time folded in (ns); `event: gap` "
            "when readings were lost; `event: error` last when the stream ends",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA, "example": FEED_EXAMPLE}},
        },
        503: {"model": ErrorResponse, "description": "The ingestor cannot be reached, or too many streams are open"},
        504: INGESTOR_ERRORS[504],
    },
)
async def aggregate_stream(
    client: Client,
    settings: Settings,
    window: Annotated[
        str, Query(pattern=WINDOW_PATTERN, description="Window length, 1s to 1d (tumbling; hopping with step)")
    ],
    step: StepParam = None,
    stats: StatsParam = None,
    category: CategoryParam = None,
    grace: GraceParam = None,
    emit: FeedEmitParam = "update",
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=r"^-?[0-9]{1,19}$",
            description="Resume after the event with this id (EventSource sends it when it reconnects)",
        ),
    ] = None,
) -> StreamingResponse:
    """Tumbling or hopping window aggregates, live, under uvicorn: first the windows of the buffered
    readings, then an event each time windows change (``emit=update``) or close (``emit=final``).
    Behind API Gateway + Lambda the response is buffered, so it is not a live stream there."""
    query = reading_query(category, None, None)
    windows = window_spec(query, window, step, None, grace or "0s", emit)
    assert windows is not None
    extra = parse_stats(stats) if stats is not None else []
    late_flags = "late" in extra
    if not OPEN_STREAMS.acquire(settings.stream_max_clients):
        raise TooManyStreams(f"{settings.stream_max_clients} streams are open, the most this server serves")
    try:
        batches = await client.watch_readings(query.categories, late_flags=late_flags)
        start = client.watch_start
        held, _ = await client.select_readings(query, before_sequence=start, late_flags=late_flags)
    except BaseException:
        OPEN_STREAMS.release()
        raise
    resumed = int(last_event_id) if last_event_id is not None else None
    if resumed is not None and (not len(held) or resumed > int(held.timestamps_ns.max())):
        resumed = None  # not this buffer's (a restarted ingestor): from the start
    feed = WindowFeed(windows, extra, watermark=resumed)
    return EventStreamResponse(
        sse_events(_then(held, batches), encode=feed.events, event_readings=BACKLOG_READINGS),
        slots=OPEN_STREAMS,
        write_timeout_s=settings.stream_stall_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _then(held: Readings, live: AsyncIterator[Batch]) -> AsyncIterator[Batch]:
    """The buffered readings as one batch, then the live ones."""
    yield Batch(held)
    async for batch in live:
        yield batch
