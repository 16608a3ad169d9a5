"""The function's gRPC client of the ingestor: one reused channel, deadlines, retries, columnar decode.

The channel is the only state the function keeps between requests. It is created lazily and reused,
and it is bound to the event loop that made it: a request on another loop (a new Lambda process, a
test client) gets a channel of its own. Failures surface as IngestorError subclasses that say what
to tell the caller; the HTTP layer maps them to status codes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import grpc
import numpy as np

from functions import logs
from functions.filters import ReadingQuery
from functions.readings import Readings
from functions.settings import FunctionSettings
from functions.sse import Batch, StreamFailed
from functions.wire import ExportChunk, MalformedMessage, decode_export_response
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

_SERVICE = "ingestor.v1.IngestorService"

# Idempotent calls are retried once on UNAVAILABLE: after an idle (frozen) period or an ingestor
# restart the first attempt may meet a dead connection. WriteReadings is never retried blindly.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": _SERVICE, "method": method}
                    for method in (
                        "StartIngestion",
                        "StopIngestion",
                        "GetStatus",
                        "ListReadings",
                        "ExportReadings",
                    )
                ],
                "retryPolicy": {
                    "maxAttempts": 2,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    # Reconnect quickly once the ingestor is back instead of backing off for up to two minutes.
    # (grpc.min_reconnect_backoff_ms is set per channel: it is the connect timeout, see below.)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Channels share subchannels (and their backoff) by default: a fresh channel must not.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]


_EXPORT_METHOD = f"/{pb.DESCRIPTOR.services_by_name['IngestorService'].full_name}/ExportReadings"
"""ExportReadings is called without the generated stub, so its messages reach functions/wire.py unparsed."""

EXPORT_CHUNK_SIZE = 65_536
"""Readings per ExportReadings message (1.2 MB). Measured at 1M readings with `make bench`: 64k
exports in ~15 ms against ~17 ms at 32k and ~25 ms at 16k, where the per-message overhead of both
processes grows; one huge message is several times slower, as nothing overlaps."""


class IngestorError(Exception):
    """A call to the ingestor failed; ``str(error)`` is safe to show to the caller."""


class IngestorUnavailable(IngestorError):
    """The ingestor cannot be reached."""


class IngestorTimeout(IngestorError):
    """The ingestor did not answer before the deadline."""


class IngestorRejected(IngestorError):
    """The ingestor refused the request (bad input, limits)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class IngestorFull(IngestorRejected):
    """The ingestor has no room for what the request adds (its category dictionary is full)."""


class IngestorFailed(IngestorError):
    """The ingestor failed in a way the caller cannot fix."""


@dataclass(frozen=True, slots=True)
class IngestorStatus:
    running: bool
    total_ingested: int
    buffered: int
    evicted: int
    capacity: int
    rate_hz: float
    categories: tuple[str, ...] = ()
    seed: int | None = None
    configured: bool = False
    """True when the current (or last) run was started with a configuration other than the defaults."""
    durable: bool = False
    """True when the ingestor keeps a data directory (see its INGESTOR_DATA_DIR)."""
    data_dir_bytes: int = 0
    generator_error: str = ""
    """Why the generator's last run ended by itself; empty when it did not."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    accepted: int
    """Readings stored by the batch (for a repeated batch id: by its first delivery)."""
    duplicate: bool
    """The batch id named a batch already stored: nothing was stored this time."""
    durable: bool
    """The batch was on disk before the acknowledgement."""


class _CallMetadata:
    """Adds the ingestor token and the current request's id to every call's metadata."""

    def __init__(self, token: str | None) -> None:
        self._authorization = ("authorization", f"Bearer {token}") if token else None

    def _with_metadata(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if self._authorization is not None:
            metadata.add(*self._authorization)
        request_id = logs.request_id.get()
        if request_id:
            metadata.add("x-request-id", request_id)
        return details._replace(metadata=metadata)  # type: ignore[attr-defined]


class _UnaryUnaryMetadata(_CallMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._with_metadata(client_call_details), request)


class _UnaryStreamMetadata(_CallMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._with_metadata(client_call_details), request)


_LIVE_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [("grpc.http2.bdp_probe", 0)]
"""Live streams (WatchReadings) get a channel of their own whose receive windows do not grow.

gRPC grows a stream's window with the bandwidth it measures, up to megabytes, and a stream the
function stops reading (because its HTTP client does not read) fills all of it: the function
would hold what the ingestor sends to every such stream. At the fixed 64 KiB a stream holds at
most that; exports keep the growing windows that make them fast."""


def _channel_options(settings: FunctionSettings, live: bool = False) -> list[tuple[str, int | str]]:
    # grpc gives each connection attempt (TCP, TLS and the HTTP/2 handshake) the larger of the
    # current backoff and min_reconnect_backoff_ms to complete: at 100 ms a handshake slower than
    # that never completes, however long the connect timeout. Each attempt may take all of it.
    connect = ("grpc.min_reconnect_backoff_ms", round(settings.ingestor_connect_timeout_s * 1000))
    return [*_CHANNEL_OPTIONS, connect, *(_LIVE_CHANNEL_OPTIONS if live else ())]


def _new_channel(settings: FunctionSettings, live: bool = False) -> grpc.aio.Channel:
    token = settings.ingestor_token.get_secret_value() if settings.ingestor_token else None
    interceptors = [_UnaryUnaryMetadata(token), _UnaryStreamMetadata(token)]
    options = _channel_options(settings, live)
    if settings.ingestor_tls or settings.ingestor_ca_file is not None:
        roots = settings.ingestor_ca_file.read_bytes() if settings.ingestor_ca_file is not None else None
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        return grpc.aio.secure_channel(
            settings.ingestor_address, credentials, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(settings.ingestor_address, options=options, interceptors=interceptors)


@dataclass
class _SharedChannel:
    settings: FunctionSettings
    loop: asyncio.AbstractEventLoop
    channel: grpc.aio.Channel


_shared: dict[bool, _SharedChannel] = {}
"""The process's channels to the ingestor, made on first use (module state on purpose): one for
calls and exports, one for live streams (key True)."""


def _channel_for(settings: FunctionSettings, *, fresh: bool = False, live: bool = False) -> grpc.aio.Channel:
    """The shared channel for the running loop, made anew when the loop or the settings changed."""
    loop = asyncio.get_running_loop()
    shared = _shared.get(live)
    if fresh or shared is None or shared.loop is not loop or shared.settings != settings:
        shared = _shared[live] = _SharedChannel(settings, loop, _new_channel(settings, live))
    return shared.channel


async def close_shared_channel() -> None:
    """Close the shared channels, if this loop made them. For a server's shutdown, never per request."""
    channels = list(_shared.values())
    _shared.clear()
    for shared in channels:
        if shared.loop is asyncio.get_running_loop():
            await shared.channel.close()


async def _settle(channel: grpc.aio.Channel) -> grpc.ChannelConnectivity:
    """Wait while the channel is idle or connecting; return the state it lands in."""
    state = channel.get_state(try_to_connect=True)
    while state in (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING):
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=True)
    return state


async def _connected_channel(settings: FunctionSettings, live: bool = False) -> grpc.aio.Channel:
    """A channel that is READY, or IngestorUnavailable within the connect timeout.

    A channel that failed to connect waits out a reconnect backoff before it tries again, so a
    request right after the ingestor comes back would fail. Instead, a failed channel is replaced
    once per request by a fresh one, which tries at once.
    """
    channel = _channel_for(settings, live=live)
    if channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
        return channel
    try:
        async with asyncio.timeout(settings.ingestor_connect_timeout_s):
            if await _settle(channel) is grpc.ChannelConnectivity.READY:
                return channel
            channel = _channel_for(settings, fresh=True, live=live)
            if await _settle(channel) is grpc.ChannelConnectivity.READY:
                return channel
    except TimeoutError:
        raise IngestorUnavailable(
            f"the ingestor did not accept a connection within {settings.ingestor_connect_timeout_s:g} s"
        ) from None
    raise IngestorUnavailable("the ingestor is unavailable: it refused the connection")


def _translate(error: grpc.aio.AioRpcError) -> IngestorError:
    code = error.code()
    if code is grpc.StatusCode.UNAVAILABLE:
        return IngestorUnavailable("the ingestor is unavailable")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return IngestorTimeout("the ingestor did not answer in time")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return IngestorFull(code, error.details() or code.name)
    if code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
    ):
        return IngestorRejected(code, error.details() or code.name)
    return IngestorFailed(f"the ingestor failed ({code.name})")


class ExportDecoder:
    """Collects ExportReadings messages as they arrive into one array per column.

    When the first message says how many readings are coming, the columns are allocated once and
    each chunk is copied into place on arrival, while the ingestor builds the next one; otherwise
    the chunks are kept as views of their messages and joined at the end. Either way each reading
    is copied once on this side, and the codes come out as uint16 whichever width a message used.
    """

    def __init__(self) -> None:
        self._columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._filled = 0
        self._chunks: list[ExportChunk] = []
        self._categories: list[str] = []
        self.next_sequence: int | None = None
        """Where the selection continues, from the last message (None when nothing is left)."""

    def add(self, message: bytes) -> None:
        """Add one ExportReadingsResponse in wire format. MalformedMessage when it is not one."""
        chunk = decode_export_response(message)
        self._categories.extend(chunk.new_categories)
        self.next_sequence = chunk.next_sequence
        if self._columns is None and not self._chunks and chunk.planned_readings:
            planned = chunk.planned_readings
            self._columns = (np.empty(planned, "<i8"), np.empty(planned, "<f8"), np.empty(planned, "<u2"))
        if self._columns is None:
            self._chunks.append(chunk)
            return
        end = self._filled + len(chunk)
        if end > len(self._columns[0]):
            raise MalformedMessage("the stream carried more readings than it planned")
        for column, part in zip(self._columns, (chunk.timestamps_ns, chunk.values, chunk.codes), strict=True):
            column[self._filled : end] = part
        self._filled = end

    def readings(self) -> Readings:
        """The readings received, oldest first."""
        if self._columns is not None:
            timestamps_ns, values, codes = (column[: self._filled] for column in self._columns)
            return Readings(timestamps_ns, values, codes, self._categories)
        if not self._chunks:
            return Readings.empty()
        return Readings(
            np.concatenate([chunk.timestamps_ns for chunk in self._chunks]),
            np.concatenate([chunk.values for chunk in self._chunks]),
            np.concatenate([chunk.codes for chunk in self._chunks], dtype=np.uint16),
            self._categories,
        )


def decode_export(messages: Iterable[pb.ExportReadingsResponse]) -> Readings:
    """Join parsed ExportReadings messages into columns, as the client does with the raw stream."""
    decoder = ExportDecoder()
    for message in messages:
        decoder.add(message.SerializeToString())
    return decoder.readings()


class IngestorClient:
    """Typed calls to the ingestor, each with a deadline; failures raise IngestorError."""

    def __init__(self, settings: FunctionSettings) -> None:
        self._settings = settings

    async def _stub(self, live: bool = False) -> pb_grpc.IngestorServiceStub:
        return pb_grpc.IngestorServiceStub(await _connected_channel(self._settings, live))

    @property
    def _timeout(self) -> float:
        return self._settings.ingestor_timeout_s

    async def start_ingestion(
        self, *, rate_hz: float | None = None, categories: Iterable[str] = (), seed: int | None = None
    ) -> bool:
        """Start the generator; True when this call started it, False when it was already running.

        Without arguments it runs with the ingestor's defaults. IngestorRejected with
        FAILED_PRECONDITION when it runs with another configuration.
        """
        request = pb.StartIngestionRequest(rate_hz=rate_hz, categories=categories, seed=seed)
        try:
            response = await (await self._stub()).StartIngestion(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        return not response.already_running

    async def stop_ingestion(self) -> bool:
        """Stop the generator; True when this call stopped it, False when it was already stopped."""
        try:
            response = await (await self._stub()).StopIngestion(pb.StopIngestionRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        return not response.already_stopped

    async def get_status(self) -> IngestorStatus:
        try:
            response = await (await self._stub()).GetStatus(pb.GetStatusRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        return IngestorStatus(
            running=response.running,
            total_ingested=response.total_ingested,
            buffered=response.buffered,
            evicted=response.evicted,
            capacity=response.capacity,
            rate_hz=response.rate_hz,
            categories=tuple(response.categories),
            seed=response.seed if response.HasField("seed") else None,
            configured=response.configured,
            durable=response.durable,
            data_dir_bytes=response.data_dir_bytes,
            generator_error=response.generator_error,
        )

    async def export_readings(self, max_readings: int = 0) -> Readings:
        """The buffered readings (only the newest ``max_readings`` when set), oldest first."""
        request = pb.ExportReadingsRequest(max_readings=max_readings, chunk_size=EXPORT_CHUNK_SIZE)
        return (await self._export(request)).readings()

    async def _export(self, request: pb.ExportReadingsRequest) -> ExportDecoder:
        """Run ExportReadings, reading each message from its wire bytes (functions/wire.py)."""
        export = (await _connected_channel(self._settings)).unary_stream(
            _EXPORT_METHOD, request_serializer=pb.ExportReadingsRequest.SerializeToString, response_deserializer=None
        )
        decoder = ExportDecoder()
        try:
            async for message in export(request, timeout=self._timeout):
                decoder.add(message)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        except MalformedMessage as error:
            raise IngestorFailed(f"the ingestor sent a malformed ExportReadings message: {error}") from None
        return decoder

    async def select_readings(
        self,
        query: ReadingQuery,
        *,
        limit: int = 0,
        before_sequence: int | None = None,
        after_sequence: int = 0,
        oldest_first: bool = False,
    ) -> tuple[Readings, int | None]:
        """Matching readings (at most ``limit``, the newest or the oldest), oldest first, and where
        the next page continues (None when nothing is left)."""
        request = pb.ExportReadingsRequest(
            max_readings=limit,
            chunk_size=EXPORT_CHUNK_SIZE,
            categories=query.categories,
            after_sequence=after_sequence,
            oldest_first=oldest_first,
        )
        if query.since_ns is not None:
            request.since.FromNanoseconds(query.since_ns)
        if query.until_ns is not None:
            request.until.FromNanoseconds(query.until_ns)
        if before_sequence is not None:
            request.before_sequence = before_sequence
        decoder = await self._export(request)
        return decoder.readings(), decoder.next_sequence

    async def write_readings(
        self,
        timestamps_ns: np.ndarray,
        values: np.ndarray,
        codes: np.ndarray,
        categories: list[str],
        batch_id: str = "",
    ) -> WriteResult:
        """Store readings, all or nothing, in columnar form. Never retried here: after a lost answer
        only the caller can tell whether to try again, safely so with a ``batch_id``."""
        request = pb.WriteReadingsRequest(
            batch_id=batch_id,
            columns=pb.ReadingColumns(
                timestamps_ns=timestamps_ns.astype("<i8").tobytes(),
                values=values.astype("<f8").tobytes(),
                category_codes=codes.astype("<u2").tobytes(),
            ),
            column_categories=categories,
        )
        try:
            response = await (await self._stub()).WriteReadings(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        return WriteResult(response.accepted, response.duplicate, response.durable)

    async def watch_readings(self, categories: Iterable[str] = ()) -> AsyncIterator[Batch]:
        """Subscribe to new readings; returns once subscribed, then yields them as they arrive, as
        columns (the columnar form of WatchReadings).

        The stream has no deadline: it lasts until the caller stops iterating (which cancels it) or
        the ingestor ends it. Failing to subscribe raises IngestorError; a failure later ends the
        iteration with StreamFailed.
        """
        request = pb.WatchReadingsRequest(categories=categories, columnar=True)
        call = (await self._stub(live=True)).WatchReadings(request)
        try:
            await asyncio.wait_for(call.initial_metadata(), self._timeout)
        except TimeoutError:
            call.cancel()
            raise IngestorTimeout("the ingestor did not answer in time") from None
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from None
        if call.done() and (code := await call.code()) is not grpc.StatusCode.OK:
            raise _translate_status(code, await call.details())
        return _watch_batches(call)


def _translate_status(code: grpc.StatusCode, details: str | None) -> IngestorError:
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return IngestorRejected(code, details or code.name)
    if code is grpc.StatusCode.UNAVAILABLE:
        return IngestorUnavailable("the ingestor is unavailable")
    return IngestorFailed(f"the ingestor failed ({code.name})")


def decode_watch(message: pb.WatchReadingsResponse) -> Batch:
    """The readings of a WatchReadingsResponse as columns, in either form; MalformedMessage when the
    columns do not fit together."""
    if message.HasField("columns"):
        columns = message.columns
        narrow = columns.WhichOneof("codes") == "category_codes_u8"
        try:
            timestamps_ns = np.frombuffer(columns.timestamps_ns, dtype="<i8")
            values = np.frombuffer(columns.values, dtype="<f8")
            codes = np.frombuffer(
                columns.category_codes_u8 if narrow else columns.category_codes, "u1" if narrow else "<u2"
            )
        except ValueError as error:
            raise MalformedMessage(str(error)) from None
        names = list(message.column_categories)
        if not len(timestamps_ns) == len(values) == len(codes):
            raise MalformedMessage("the columns have different lengths")
        if len(codes) and int(codes.max()) >= len(names):
            raise MalformedMessage("a category code is outside column_categories")
        return Batch(Readings(timestamps_ns, values, codes.astype(np.uint16), names), message.missed)
    readings = message.readings
    names = list(dict.fromkeys(reading.category for reading in readings))
    index = {name: code for code, name in enumerate(names)}
    count = len(readings)
    columns = Readings(
        np.fromiter(
            (r.timestamp.seconds * 1_000_000_000 + r.timestamp.nanos for r in readings), dtype=np.int64, count=count
        ),
        np.fromiter((r.value for r in readings), dtype=np.float64, count=count),
        np.fromiter((index[r.category] for r in readings), dtype=np.uint16, count=count),
        names,
    )
    return Batch(columns, message.missed)


async def _watch_batches(call: grpc.aio.UnaryStreamCall) -> AsyncIterator[Batch]:
    try:
        async for message in call:
            yield decode_watch(message)
    except grpc.aio.AioRpcError as error:
        raise StreamFailed(str(_translate(error))) from None
    except MalformedMessage as error:
        raise StreamFailed(f"the ingestor sent a malformed WatchReadings message: {error}") from None
    finally:
        call.cancel()
