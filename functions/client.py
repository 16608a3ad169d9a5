"""Typed calls to the ingestor, each with a deadline; a failed call raises an IngestorError.

The calls go over the shared channels of functions/channel.py; failures become the exceptions of
functions/errors.py, which the HTTP layer answers with a status of its one table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import TypeVar

import grpc
import pandas as pd
from google.protobuf.message import Message

from functions.channel import connected_channel, method_path
from functions.errors import (
    IngestorFailed,
    IngestorLacksCall,
    IngestorTimeout,
    IngestorUnavailable,
    ingestor_error,
    rpc_error,
)
from functions.export_parts import ExportPart, export_parts, read_message
from functions.filters import ReadingQuery
from functions.processing import TooManyGroups
from functions.readings import Readings
from functions.settings import FunctionSettings
from functions.sse import Batch
from functions.telemetry import measured
from functions.watch import watch_batches
from functions.wire import (
    HEALTH_CHECK_REQUEST,
    ExportDecoder,
    MalformedMessage,
    decode_health_status,
    decode_partials,
)
from ingestor.v1 import ingestor_pb2 as pb

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
EXPORT_STREAM_TIMEOUT_S = 300.0
"""Deadline of an export streamed to an HTTP client (GET /export), which goes at the client's pace."""
EXPORT_CHUNK_SIZE = 65_536
FILE_CHUNK_SIZE = 131_072
"""Readings per message of a file export (the most the ingestor sends in one): a Parquet row group
each. The function holds a message's bytes, about 1.2 MB, not its columns."""
"""Readings per ExportReadings message (1.2 MB): large enough that the per-message overhead of both
processes stays small, small enough that decoding one chunk overlaps the encoding of the next (one
huge message is several times slower). docs/performance.md has the measurements."""


Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


class IngestorClient:
    """Typed calls to the ingestor, each with a deadline; failures raise IngestorError."""

    def __init__(self, settings: FunctionSettings) -> None:
        self._settings = settings
        self.watch_start: int | None = None
        """The sequence number the last subscription of :meth:`watch_readings` starts at, when the
        ingestor says (an export below it complements the stream exactly)."""

    @property
    def _timeout(self) -> float:
        return self._settings.ingestor_timeout_s

    async def _call(self, method: str, request: Request, response_type: type[Response], batch_id: str = "") -> Response:
        """One unary call, ``method`` named as in the contract (a write's ``batch_id`` names it in errors)."""
        try:
            with measured(method):
                channel = await connected_channel(self._settings)
                call: grpc.aio.UnaryUnaryMultiCallable[Request, Response] = channel.unary_unary(
                    method_path(method),
                    request_serializer=type(request).SerializeToString,
                    response_deserializer=response_type.FromString,
                )
                return await call(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error, batch_id=batch_id) from None

    async def check_ready(self) -> None:
        """Return once the ingestor answers SERVING to its health check within the connect timeout;
        IngestorUnavailable saying why not otherwise."""
        limit = self._settings.ingestor_connect_timeout_s
        try:
            with measured("Check"):
                channel = await connected_channel(self._settings)
                # Without serializers gRPC sends and hands over the bytes as they are (functions/wire.py).
                check: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(HEALTH_CHECK)
                answer = await check(HEALTH_CHECK_REQUEST, timeout=limit)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise IngestorUnavailable(f"the ingestor did not answer its health check within {limit:g} s") from None
            raise IngestorUnavailable(f"the ingestor's health check failed: {error.code().name}") from None
        try:
            status = decode_health_status(answer)
        except MalformedMessage:
            status = "a malformed answer"
        if status != "SERVING":
            raise IngestorUnavailable(f"the ingestor is not serving ({status})")

    async def start_ingestion(
        self, *, rate_hz: float | None = None, categories: Iterable[str] = (), seed: int | None = None
    ) -> bool:
        """Start the generator; True when this call started it, False when it was already running.

        Without arguments it runs with the ingestor's defaults. IngestorConflict when it runs with
        another configuration.
        """
        request = pb.StartIngestionRequest(rate_hz=rate_hz, categories=categories, seed=seed)
        response = await self._call("StartIngestion", request, pb.StartIngestionResponse)
        return not response.already_running

    async def stop_ingestion(self) -> bool:
        """Stop the generator; True when this call stopped it, False when it was already stopped."""
        response = await self._call("StopIngestion", pb.StopIngestionRequest(), pb.StopIngestionResponse)
        return not response.already_stopped

    async def get_status(self) -> pb.GetStatusResponse:
        """The generator's state, the buffer's accounting and the current (or last) run's configuration."""
        return await self._call("GetStatus", pb.GetStatusRequest(), pb.GetStatusResponse)

    async def export_readings(self, max_readings: int = 0, *, late_flags: bool = False) -> Readings:
        """The buffered readings (only the newest ``max_readings`` when set), oldest first; with
        ``late_flags``, each reading's late flag too."""
        request = pb.ExportReadingsRequest(
            max_readings=max_readings, chunk_size=EXPORT_CHUNK_SIZE, late_flags=late_flags
        )
        return (await self._export(request)).readings()

    async def _export(self, request: pb.ExportReadingsRequest) -> ExportDecoder:
        """Run ExportReadings, reading each message from its wire bytes (functions/wire.py): without a
        deserializer, gRPC hands the messages over unparsed."""
        decoder = ExportDecoder()
        try:
            with measured("ExportReadings"):
                async for message in await self._export_call(request):
                    decoder.add(message)
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error) from None
        except MalformedMessage as error:
            raise IngestorFailed(f"the ingestor sent a malformed ExportReadings message: {error}") from None
        return decoder

    async def _export_call(
        self, request: pb.ExportReadingsRequest, deadline_s: float | None = None
    ) -> grpc.aio.UnaryStreamCall[pb.ExportReadingsRequest, bytes]:
        channel = await connected_channel(self._settings)
        export: grpc.aio.UnaryStreamMultiCallable[pb.ExportReadingsRequest, bytes] = channel.unary_stream(
            method_path("ExportReadings"), request_serializer=pb.ExportReadingsRequest.SerializeToString
        )
        return export(request, timeout=deadline_s or self._timeout)

    async def export_chunks(
        self,
        query: ReadingQuery,
        *,
        late_flags: bool = False,
        file_format: pb.ExportFormat = pb.EXPORT_FORMAT_UNSPECIFIED,
    ) -> AsyncGenerator[ExportPart, None]:
        """The matching readings chunk by chunk as they arrive, oldest first, each chunk with the
        stream's category dictionary so far; memory bounded by a chunk. With a ``file_format``, the
        file the ingestor encodes instead, its bytes as they arrive. Returns once the first message
        is in (a failure to start raises IngestorError); a failure later ends the iteration with
        IngestorError too."""
        request = export_request(query, late_flags=late_flags)
        request.format = file_format
        if file_format != pb.EXPORT_FORMAT_UNSPECIFIED:
            request.chunk_size = FILE_CHUNK_SIZE
        try:
            # Measured up to its first message: the rest goes at the HTTP client's pace.
            with measured("ExportReadings"):
                call = await self._export_call(request, EXPORT_STREAM_TIMEOUT_S)
                messages = aiter(call)
                first = await anext(messages, None)
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error) from None
        try:
            # Read before the answer starts, so that a wrong format is an error status, not a cut file.
            first_chunk = None if first is None else read_message(first, file_format)
        except IngestorFailed:
            call.cancel()
            raise
        return export_parts(call, first_chunk, messages, file_format)

    async def select_readings(
        self,
        query: ReadingQuery,
        *,
        limit: int = 0,
        before_sequence: int | None = None,
        after_sequence: int = 0,
        oldest_first: bool = False,
        late_flags: bool = False,
    ) -> tuple[Readings, int | None]:
        """Matching readings (at most ``limit``, the newest or the oldest), oldest first, and where
        the next page continues (None when nothing is left)."""
        request = export_request(query, limit, before_sequence, after_sequence, oldest_first, late_flags)
        decoder = await self._export(request)
        return decoder.readings(), decoder.next_sequence

    async def aggregate_partials(self, query: ReadingQuery, bucket_ns: int) -> pd.DataFrame | None:
        """The partial aggregates of the matching readings per category and bucket of ``bucket_ns``
        (a whole number of seconds; 0: per category), as ``functions/partials.py`` merges them; None
        from an ingestor that does not have AggregateReadings (a version from before it)."""
        request = pb.AggregateReadingsRequest(categories=query.categories, bucket_seconds=bucket_ns // 1_000_000_000)
        if query.since_ns is not None:
            request.since.FromNanoseconds(query.since_ns)
        if query.until_ns is not None:
            request.until.FromNanoseconds(query.until_ns)
        try:
            response = await self._call("AggregateReadings", request, pb.AggregateReadingsResponse)
        except IngestorLacksCall:
            return None
        try:
            return decode_partials(response)
        except MalformedMessage as error:
            raise IngestorFailed(f"the ingestor sent malformed partials: {error}") from None

    async def get_history(
        self, query: ReadingQuery, bucket_minutes: int, max_rows: int = 0
    ) -> tuple[pd.DataFrame, int | None]:
        """The rollups of the matching minutes per category and bucket of ``bucket_minutes`` minutes
        (keys: minute // bucket_minutes), as ``functions/partials.py`` merges them, and the oldest
        event time the ingestor's buffer holds (None when it holds none). TooManyGroups when there
        would be more than ``max_rows`` rows (0: no limit)."""
        request = pb.GetHistoryRequest(categories=query.categories, bucket_minutes=bucket_minutes, max_rows=max_rows)
        if query.since_ns is not None:
            request.since.FromNanoseconds(query.since_ns)
        if query.until_ns is not None:
            request.until.FromNanoseconds(query.until_ns)
        response = await self._call("GetHistory", request, pb.GetHistoryResponse)
        if max_rows and response.rows > max_rows:
            raise TooManyGroups(f"{response.rows} result objects, more than {max_rows}")
        try:
            rows = decode_partials(response)
        except MalformedMessage as error:
            raise IngestorFailed(f"the ingestor sent malformed rollups: {error}") from None
        oldest = response.buffer_oldest.ToNanoseconds() if response.HasField("buffer_oldest") else None
        return rows, oldest

    async def write_readings(self, readings: Readings, batch_id: str = "") -> pb.WriteReadingsResponse:
        """Store readings, all or nothing, in columnar form. Never retried here: after a lost answer
        only the caller can tell whether to try again, safely so with a ``batch_id``."""
        request = pb.WriteReadingsRequest(
            batch_id=batch_id,
            columns=pb.ReadingColumns(
                timestamps_ns=readings.timestamps_ns.astype("<i8").tobytes(),
                values=readings.values.astype("<f8").tobytes(),
                category_codes=readings.codes.astype("<u2").tobytes(),
            ),
            column_categories=readings.categories,
        )
        return await self._call("WriteReadings", request, pb.WriteReadingsResponse, batch_id)

    async def watch_readings(
        self, categories: Iterable[str] = (), after_sequence: int | None = None, *, late_flags: bool = False
    ) -> AsyncIterator[Batch]:
        """Subscribe to new readings; returns once subscribed, then yields them as they arrive, as
        columns with their sequence numbers (the columnar form of WatchReadings). With
        ``after_sequence``, the held readings numbered above it come first.

        The stream has no deadline: it lasts until the caller stops iterating (which cancels it) or
        the ingestor ends it. Failing to subscribe raises IngestorError (IngestorBusy when the
        ingestor has no subscriber slot free); a failure later ends the iteration with StreamFailed.
        """
        channel = await connected_channel(self._settings, live=True)
        watch: grpc.aio.UnaryStreamMultiCallable[pb.WatchReadingsRequest, pb.WatchReadingsResponse]
        watch = channel.unary_stream(
            method_path("WatchReadings"),
            request_serializer=pb.WatchReadingsRequest.SerializeToString,
            response_deserializer=pb.WatchReadingsResponse.FromString,
        )
        request = pb.WatchReadingsRequest(categories=categories, columnar=True, sequences=True, late_flags=late_flags)
        if after_sequence is not None:
            request.after_sequence = after_sequence + 1
        call = watch(request)
        try:
            self.watch_start = _next_sequence(await asyncio.wait_for(call.initial_metadata(), self._timeout))
        except TimeoutError:
            call.cancel()
            raise IngestorTimeout("the ingestor did not answer in time") from None
        except grpc.aio.AioRpcError as error:
            raise rpc_error(error, live=True) from None
        if call.done() and (code := await call.code()) is not grpc.StatusCode.OK:
            raise ingestor_error(code, await call.details(), live=True)
        return watch_batches(call)


def export_request(
    query: ReadingQuery,
    limit: int = 0,
    before_sequence: int | None = None,
    after_sequence: int = 0,
    oldest_first: bool = False,
    late_flags: bool = False,
) -> pb.ExportReadingsRequest:
    """The ExportReadings request of a filter and its bounds."""
    request = pb.ExportReadingsRequest(
        max_readings=limit,
        chunk_size=EXPORT_CHUNK_SIZE,
        categories=query.categories,
        after_sequence=after_sequence,
        oldest_first=oldest_first,
        late_flags=late_flags,
    )
    if query.since_ns is not None:
        request.since.FromNanoseconds(query.since_ns)
    if query.until_ns is not None:
        request.until.FromNanoseconds(query.until_ns)
    if before_sequence is not None:
        request.before_sequence = before_sequence
    return request


def _next_sequence(metadata: object) -> int | None:
    """The ``next-sequence`` of WatchReadings' initial metadata, when there."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == "next-sequence" and str(value).isdigit():
            return int(value)
    return None
