"""GET /stream: new readings as Server-Sent Events, for as many clients as the process may serve."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from functions.deps import Client, Settings
from functions.errors import TooManyStreams
from functions.filters import SEQUENCE_PATTERN, AfterSequenceParam, CategoryParam, reading_query
from functions.schemas import INGESTOR_ERRORS, SSE_EVENT_SCHEMA, STREAM_EXAMPLE, ErrorResponse
from functions.sse import sse_events
from functions.streams import OPEN_STREAMS, EventStreamResponse

router = APIRouter()


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: each `data:` a JSON array of readings (at most one burst of writes "
            "every 100 ms), its `id:` the sequence number of its last reading; `event: gap` with "
            '`data: {"missed": n}` when this client fell behind and lost n readings (or, resuming, when n '
            'readings were evicted before they could be sent); `event: error` with `data: {"detail": "..."}` '
            "when the stream ends (shutdown, or a client that stayed behind too long)",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA, "example": STREAM_EXAMPLE}},
        },
        503: {
            "model": ErrorResponse,
            "description": "The ingestor cannot be reached, or too many streams are open (with Retry-After)",
        },
        504: INGESTOR_ERRORS[504],
    },
)
async def stream(
    client: Client,
    settings: Settings,
    category: CategoryParam = None,
    after_sequence: AfterSequenceParam = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=SEQUENCE_PATTERN,
            description="The `id` of the last event received: the stream resumes right after it (an "
            "EventSource sends it when it reconnects); wins over after_sequence",
        ),
    ] = None,
) -> StreamingResponse:
    """New readings as they arrive, live, under uvicorn. Behind API Gateway + Lambda the response is
    buffered, so it is not a live stream there. At most STREAM_MAX_CLIENTS streams at once per
    process: beyond, 503 with Retry-After. Resuming (``Last-Event-ID`` or ``after_sequence``), the
    readings still held after that sequence number come first, each once."""
    query = reading_query(category, None, None)
    resume_after = int(last_event_id) if last_event_id is not None else after_sequence
    if not OPEN_STREAMS.acquire(settings.stream_max_clients):
        raise TooManyStreams(f"{settings.stream_max_clients} streams are open, the most this server serves")
    try:
        batches = await client.watch_readings(query.categories, resume_after)
    except BaseException:
        OPEN_STREAMS.release()
        raise
    return EventStreamResponse(
        sse_events(batches),
        slots=OPEN_STREAMS,
        write_timeout_s=settings.stream_stall_s,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
