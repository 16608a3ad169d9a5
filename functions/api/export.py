"""GET /export: every matching reading, no cap, as CSV, NDJSON, Parquet or Arrow, streamed chunk by chunk."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from functions import telemetry
from functions.deps import Client
from functions.errors import IngestorError
from functions.export_parts import ExportPart
from functions.filters import CategoryParam, SinceParam, UntilParam, reading_query
from functions.formats import EXTENSIONS, MEDIA_TYPES, SMALLEST_BYTES, ReadingsEncoder, negotiate
from functions.readings import Readings
from functions.responses import attachment
from functions.schemas import INGESTOR_ERRORS, ErrorResponse
from ingestor.v1 import ingestor_pb2 as pb

router = APIRouter()

LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024
"""What AWS Lambda returns at most from a synchronous invocation, headers and all: behind API
Gateway the function's answer is buffered whole, so an export must fit in it."""
_ENVELOPE_BYTES = 16 * 1024
"""Room kept for the status, the headers and the JSON the answer travels in."""
_TEXT = ("csv", "ndjson")
"""Formats Mangum passes as text; it base64-encodes the others (4 bytes for every 3)."""

ExportFormatParam = Annotated[
    Literal["csv", "ndjson", "parquet", "arrow"] | None,
    Query(alias="format", description="csv (default), ndjson, parquet or arrow; or say it with Accept"),
]
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]


INGESTOR_FORMATS: dict[str, pb.ExportFormat] = {"parquet": pb.EXPORT_FORMAT_PARQUET, "csv": pb.EXPORT_FORMAT_CSV}
"""Formats the ingestor writes itself (``ingestor/parquet_stream.py``, ``ingestor/csv_text.py``,
compiled): the function passes the file's bytes on. An export is bound by its encoder, and there
the columns need not cross a process boundary first."""


class ExportTooLarge(Exception):
    pass


class Encoder:
    """A format the function encodes, chunk by chunk, from the readings (``functions/formats.py``)."""

    def __init__(self, format_name: str) -> None:
        self.format = format_name
        self._encoder = ReadingsEncoder(format_name)
        self.in_thread = True
        """Whether encoding takes long enough to be worth a worker thread (numpy and pyarrow let go
        of the GIL)."""
        self.in_flight = 3 if format_name in _TEXT else 1
        """Chunks encoded at once: text's chunks are independent once the head is out (on two cores,
        the second runs while the first holds the GIL); Arrow's writer goes one batch at a time."""

    def start(self) -> bytes | memoryview:
        """What comes before the first chunk (CSV's header line)."""
        return self._encoder.chunk(Readings.empty())

    def chunk(self, part: ExportPart) -> bytes | memoryview:
        return self._encoder.chunk(part.readings)

    def finish(self) -> bytes:
        return self._encoder.finish()


class Relay:
    """A file the ingestor encoded: each part's bytes go out as they come."""

    def __init__(self, format_name: str) -> None:
        self.format = format_name
        self.in_thread = False
        self.in_flight = 1

    def start(self) -> bytes:
        return b""

    def chunk(self, part: ExportPart) -> bytes | memoryview:
        return part.data if part.data is not None else b""

    def finish(self) -> bytes:
        return b""


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The readings in arrival order, as a file (Content-Disposition names it)",
            "content": {media: {} for media in MEDIA_TYPES.values()},
        },
        413: {"model": ErrorResponse, "description": "Behind API Gateway + Lambda: over the 6 MB answer limit"},
        **INGESTOR_ERRORS,
    },
)
async def export(
    request: Request,
    client: Client,
    category: CategoryParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    format_name: ExportFormatParam = None,
    accept: AcceptHeader = None,
) -> Response:
    """Every buffered (matching) reading, in arrival order (as /raw-data's pages), with no cap: streamed
    as the ingestor's chunks arrive, so memory holds a chunk, not the export. Behind API Gateway +
    Lambda the answer is buffered and at most 6 MB: beyond, a 413 that says how to narrow it."""
    chosen = negotiate(format_name, accept, "csv", with_json=False)
    query = reading_query(category, since, until)
    parts = await client.export_chunks(query, file_format=INGESTOR_FORMATS.get(chosen, pb.EXPORT_FORMAT_UNSPECIFIED))
    encoder = Relay(chosen) if chosen in INGESTOR_FORMATS else Encoder(chosen)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = attachment(f"readings-{stamp}", EXTENSIONS[chosen])
    if request.scope.get("aws.event") is not None:
        try:
            body = await _within(LAMBDA_RESPONSE_BYTES - _ENVELOPE_BYTES, encoder, parts)
        except ExportTooLarge as error:
            raise HTTPException(413, str(error)) from None
        return Response(body, media_type=MEDIA_TYPES[chosen], headers=headers)
    return StreamingResponse(_stream(encoder, parts), media_type=MEDIA_TYPES[chosen], headers=headers)


async def _stream(
    encoder: Encoder | Relay, parts: AsyncGenerator[ExportPart, None]
) -> AsyncIterator[bytes | memoryview]:
    """The export's bytes as a pipeline: while worker threads encode chunks (numpy and pyarrow let
    go of the GIL), the event loop receives the next one and writes out the ones done, in order."""
    upcoming: asyncio.Future[ExportPart | None] = asyncio.ensure_future(anext(parts, None))
    encoding: collections.deque[asyncio.Future[bytes | memoryview]] = collections.deque()
    try:
        if head := encoder.start():
            yield head
        while (part := await upcoming) is not None:
            upcoming = asyncio.ensure_future(anext(parts, None))
            telemetry.readings_returned(part.count)
            if not encoder.in_thread:
                if data := encoder.chunk(part):
                    yield data
                continue
            encoding.append(asyncio.ensure_future(asyncio.to_thread(encoder.chunk, part)))
            if len(encoding) >= encoder.in_flight and (data := await encoding.popleft()):
                yield data
        while encoding:
            if data := await encoding.popleft():
                yield data
        yield encoder.finish()
    finally:
        for pending in encoding:
            with contextlib.suppress(Exception):
                await pending
        if not upcoming.done():
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, IngestorError):
                await upcoming
        await parts.aclose()


async def _within(limit: int, encoder: Encoder | Relay, parts: AsyncGenerator[ExportPart, None]) -> bytes:
    """The whole export, as long as it stays within ``limit`` bytes once Mangum has encoded it;
    ExportTooLarge as soon as it cannot (at once when its count of readings says so)."""
    chunks: list[bytes | memoryview] = []
    size = readings = 0

    def encoded(raw: int) -> int:
        return raw if encoder.format in _TEXT else 4 * math.ceil(raw / 3)

    def too_large(at_least: int, count: int) -> ExportTooLarge:
        return ExportTooLarge(
            f"this export takes at least {at_least:,} bytes ({count:,} readings as {encoder.format}), more than "
            f"the {LAMBDA_RESPONSE_BYTES:,} an answer of AWS Lambda behind API Gateway may take: narrow it with "
            "since and until (or category), export in parts, or call the function under uvicorn, where exports "
            "stream without a limit"
        )

    try:
        async for part in parts:
            if part.planned and encoded(part.planned * SMALLEST_BYTES[encoder.format]) > limit:
                raise too_large(encoded(part.planned * SMALLEST_BYTES[encoder.format]), part.planned)
            chunks.append(encoder.chunk(part))
            size += len(chunks[-1])
            readings += part.count
            if encoded(size) > limit:
                raise too_large(encoded(size), readings)
        chunks.append(encoder.finish())
    finally:
        await parts.aclose()
    if encoded(size + len(chunks[-1])) > limit:
        raise too_large(encoded(size + len(chunks[-1])), readings)
    telemetry.readings_returned(readings)
    return b"".join(chunks)
