"""IngestorService: a thin mapping from RPCs to the store and the generator.

Validation failures become INVALID_ARGUMENT, a full category dictionary RESOURCE_EXHAUSTED, and an
unexpected error INTERNAL with a generic message: never UNKNOWN, never a traceback to the caller.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import random
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import grpc
import numpy as np

from ingestor.categories import StreamDictionary, check_categories
from ingestor.errors import (
    CategoryLimitError,
    ConfigConflict,
    InvalidArgument,
    JournalError,
    ShuttingDown,
    TooManySubscribers,
)
from ingestor.generator import GeneratorControl, RunConfig
from ingestor.intake import Intake
from ingestor.memory import release_freed_memory
from ingestor.query import ReadingFilter, gather, select_page
from ingestor.readings import decode_write_request
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from ingestor.watch import (
    PIECE_READINGS,
    Delivery,
    NamedColumns,
    Subscription,
    WatchHub,
    join,
)
from ingestor.wire import (
    encode_export_response,
    encode_watch_columns,
    encode_watch_missed,
    encode_watch_readings,
)

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_CHUNK_SIZE = 65_536
MAX_CHUNK_SIZE = 131_072
RELEASE_AFTER_READINGS = 16_384
"""Writes at least this large (~300 KB) hand their freed buffers back to the system afterwards."""
RELEASE_DELAY_S = 0.1
MAX_WATCH_MESSAGE = PIECE_READINGS
DEFAULT_WATCH_BUFFER = 65_536
DEFAULT_WATCH_STALL_S = 10.0
WATCH_INTERVAL_S = 0.1
"""A subscriber gets a message at most every 100 ms unless readings fill one: 200 subscribers of a
generator that ticks 100 times a second would otherwise cost 20,000 messages a second, and wake
all at once at each tick."""
FINAL_MESSAGE_TIMEOUT_S = 1.0
"""How long a subscriber dropped for falling behind has to take the message that says what it lost."""
_PAGE_TOKEN = struct.Struct("<Q")
_FILTERED_PAGE_TOKEN = struct.Struct("<QI")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _unary_errors(method: Handler) -> Handler:
    """Turn domain errors into status codes, and anything unexpected into INTERNAL (not UNKNOWN)."""

    @functools.wraps(method)
    async def wrapper(self: IngestorServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except InvalidArgument as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except CategoryLimitError as error:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except JournalError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        except ConfigConflict as error:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the ingestor")

    return wrapper  # type: ignore[return-value]


def encode_page_token(before_seq: int) -> str:
    return _encode_token(_PAGE_TOKEN.pack(before_seq))


def decode_page_token(token: str) -> int:
    """The sequence number a page token points below; InvalidArgument when it is not one of ours."""
    (before_seq,) = _decode_token(token, _PAGE_TOKEN, other=_FILTERED_PAGE_TOKEN)
    return before_seq


def encode_filtered_page_token(before_seq: int, flt: ReadingFilter) -> str:
    return _encode_token(_FILTERED_PAGE_TOKEN.pack(before_seq, flt.fingerprint()))


def decode_filtered_page_token(token: str, flt: ReadingFilter) -> int:
    """Like decode_page_token, for a token that must have been issued for the same filters."""
    before_seq, fingerprint = _decode_token(token, _FILTERED_PAGE_TOKEN, other=_PAGE_TOKEN)
    if fingerprint != flt.fingerprint():
        raise InvalidArgument("page_token was issued for other filters")
    return before_seq


def _encode_token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, layout: struct.Struct, other: struct.Struct) -> tuple[Any, ...]:
    """The fields of a token of ``layout``; a token of the ``other`` layout was issued for other filters."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidArgument("page_token is not a token this service issued") from None
    if len(raw) == other.size:
        raise InvalidArgument("page_token was issued for other filters")
    try:
        return layout.unpack(raw)
    except struct.error:
        raise InvalidArgument("page_token is not a token this service issued") from None


def _timestamp_ns(timestamp: Any, field: str) -> int:
    if not 0 <= timestamp.nanos <= 999_999_999:
        raise InvalidArgument(f"{field}.nanos must be in [0, 999999999], got {timestamp.nanos}")
    ns = timestamp.seconds * 1_000_000_000 + timestamp.nanos
    return max(-(2**63), min(ns, 2**63 - 1))


def reading_filter(request: Any) -> ReadingFilter:
    """The categories/since/until filter of a request; InvalidArgument when it is malformed."""
    check_categories(request.categories, "categories")
    since = _timestamp_ns(request.since, "since") if request.HasField("since") else None
    until = _timestamp_ns(request.until, "until") if request.HasField("until") else None
    if since is not None and until is not None and since > until:
        raise InvalidArgument("since must not be after until")
    return ReadingFilter(frozenset(request.categories), since, until)


MAX_RATE_HZ = 1_000_000
MAX_RUN_CATEGORIES = 64


def run_config(request: pb.StartIngestionRequest, default: RunConfig) -> RunConfig | None:
    """The configuration a start request asks for (unset fields from ``default``); None when empty."""
    if not (request.HasField("rate_hz") or request.categories or request.HasField("seed")):
        return None
    rate_hz = request.rate_hz if request.HasField("rate_hz") else default.rate_hz
    if not 0 < rate_hz <= MAX_RATE_HZ:
        raise InvalidArgument(f"rate_hz must be in (0, {MAX_RATE_HZ}], got {rate_hz}")
    categories = tuple(request.categories) or default.categories
    if len(categories) > MAX_RUN_CATEGORIES:
        raise InvalidArgument(f"at most {MAX_RUN_CATEGORIES} categories, got {len(categories)}")
    if len(set(categories)) != len(categories):
        raise InvalidArgument("categories must be distinct")
    check_categories(categories, "categories")
    return RunConfig(rate_hz, categories, request.seed if request.HasField("seed") else None)


def _column_messages(columns: Columns, names: Any) -> list[pb.Reading]:
    seconds, nanos = np.divmod(columns.timestamps_ns, 1_000_000_000)
    return [
        pb.Reading(
            timestamp={"seconds": s, "nanos": n},
            value=v,
            category=names[c],
        )
        for s, n, v, c in zip(
            seconds.tolist(), nanos.tolist(), columns.values.tolist(), columns.codes.tolist(), strict=True
        )
    ]


def _reading_messages(store: ReadingStore, start: int, stop: int) -> list[pb.Reading]:
    return _column_messages(store.read(start, stop), store.categories)


class IngestorServicer(pb_grpc.IngestorServiceServicer):
    def __init__(
        self,
        store: ReadingStore,
        generator: GeneratorControl,
        intake: Intake | None = None,
        hub: WatchHub | None = None,
        watch_stall_s: float = DEFAULT_WATCH_STALL_S,
    ) -> None:
        self._store = store
        self._generator = generator
        self._intake = intake or Intake(store)
        self._hub = hub or WatchHub(store, DEFAULT_WATCH_BUFFER)
        self._watch_stall_s = watch_stall_s
        self._release_pending = False

    def _release_memory_soon(self) -> None:
        """Hand the buffers of large writes back to the system shortly after, once per pause.

        Not at once: the call still holds its request, and a bulk producer's next write would only
        fault the same pages in again. At most every RELEASE_DELAY_S while writes continue.
        """
        if self._release_pending:
            return

        def release() -> None:
            self._release_pending = False
            release_freed_memory()

        self._release_pending = True
        asyncio.get_running_loop().call_later(RELEASE_DELAY_S, release)

    @_unary_errors
    async def StartIngestion(
        self, request: pb.StartIngestionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartIngestionResponse:
        started = self._generator.start(run_config(request, self._generator.default_config))
        return pb.StartIngestionResponse(already_running=not started)

    @_unary_errors
    async def StopIngestion(
        self, request: pb.StopIngestionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StopIngestionResponse:
        stopped = await self._generator.stop()
        return pb.StopIngestionResponse(already_stopped=not stopped)

    @_unary_errors
    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.GetStatusResponse:
        store = self._store
        return pb.GetStatusResponse(
            running=self._generator.running,
            total_ingested=store.total_ingested,
            buffered=store.buffered,
            evicted=store.evicted,
            capacity=store.capacity,
            rate_hz=self._generator.rate_hz,
            categories=self._generator.categories,
            seed=self._generator.config.seed,
            configured=self._generator.config != self._generator.default_config,
            generator_error=self._generator.failure or "",
            durable=self._intake.durable,
            data_dir_bytes=self._intake.data_dir_bytes(),
            recovered=self._intake.recovered,
            remembered_batch_ids=self._intake.remembered_batch_ids,
        )

    @_unary_errors
    async def ListReadings(
        self, request: pb.ListReadingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReadingsResponse:
        if request.page_size < 0:
            raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        flt = reading_filter(request)
        if not flt.selects_all:
            return self._filtered_page(flt, page_size, request.page_token)
        stop = self._store.total_ingested
        if request.page_token:
            stop = decode_page_token(request.page_token)
            if stop > self._store.total_ingested:
                raise InvalidArgument("page_token is not a token this service issued")
        start, stop = self._store.clamp(stop - page_size, stop)
        more = start > self._store.oldest_sequence
        return pb.ListReadingsResponse(
            readings=_reading_messages(self._store, start, stop),
            next_page_token=encode_page_token(start) if more else "",
        )

    def _filtered_page(self, flt: ReadingFilter, page_size: int, page_token: str) -> pb.ListReadingsResponse:
        store = self._store
        before = store.total_ingested
        if page_token:
            before = decode_filtered_page_token(page_token, flt)
            if before > store.total_ingested:
                raise InvalidArgument("page_token is not a token this service issued")
        page = select_page(store, flt, before_seq=before, limit=page_size)
        return pb.ListReadingsResponse(
            readings=_column_messages(gather(store, page.sequences), store.categories),
            next_page_token="" if page.next_sequence is None else encode_filtered_page_token(page.next_sequence, flt),
        )

    async def ExportReadings(
        self, request: pb.ExportReadingsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Streams ExportReadingsResponse messages already encoded (ingestor/wire.py)."""
        chunk_size = request.chunk_size or DEFAULT_CHUNK_SIZE
        if chunk_size > MAX_CHUNK_SIZE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"chunk_size must be at most {MAX_CHUNK_SIZE}, got {chunk_size}",
            )
        try:
            flt = reading_filter(request)
        except InvalidArgument as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        selective = (
            not flt.selects_all
            or request.HasField("before_sequence")
            or request.HasField("after_sequence")
            or request.oldest_first
        )
        try:
            if selective:
                messages = self._selected_messages(request, flt, chunk_size)
            else:
                messages = self._export_messages(request.max_readings, chunk_size)
            for message in messages:
                yield message
        except Exception:
            log.exception("ExportReadings failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the ingestor")

    def _export_messages(self, max_readings: int, chunk_size: int) -> Iterator[bytes]:
        """Chunks of the readings held when the export starts, built lazily so each is a fresh copy.

        Between two messages the generator may evict readings: those are skipped, never repeated.
        """
        store = self._store
        stop = store.total_ingested
        start = stop - max_readings if max_readings else 0
        dictionary = StreamDictionary(store.dictionary)
        start, stop = store.clamp(start, stop)
        planned = stop - start
        while True:
            start, stop = store.clamp(start, stop)
            if start >= stop:
                return
            run = store.views(start, min(stop, start + chunk_size))[0]
            codes, new_categories = dictionary.translate(run.codes)
            yield encode_export_response(
                Columns(run.timestamps_ns, run.values, codes), new_categories, planned_readings=planned
            )
            planned = 0
            start += len(run)

    def _selected_messages(
        self, request: pb.ExportReadingsRequest, flt: ReadingFilter, chunk_size: int
    ) -> Iterator[bytes]:
        """Chunks of the matching readings, selected when the export starts and gathered lazily.

        Readings evicted between two messages are skipped. The last message carries next_sequence
        when max_readings left matches out.
        """
        store = self._store
        page = select_page(
            store,
            flt,
            after_seq=request.after_sequence,
            before_seq=request.before_sequence if request.HasField("before_sequence") else None,
            limit=request.max_readings,
            oldest_first=request.oldest_first,
        )
        dictionary, planned = StreamDictionary(store.dictionary), len(page.sequences)
        chunks = [page.sequences[i : i + chunk_size] for i in range(0, len(page.sequences), chunk_size)]
        for number, chunk in enumerate(chunks or [page.sequences]):
            columns = gather(store, chunk)
            if not len(columns) and number < len(chunks) - 1:
                continue
            codes, new_categories = dictionary.translate(columns.codes)
            last = number >= len(chunks) - 1
            next_sequence = page.next_sequence if last else None
            yield encode_export_response(
                Columns(columns.timestamps_ns, columns.values, codes), new_categories, next_sequence, planned
            )
            planned = 0

    @_unary_errors
    async def WriteReadings(
        self, request: pb.WriteReadingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.WriteReadingsResponse:
        # A retry is answered before its readings are decoded: they would add names for nothing.
        replayed = await self._intake.replay(request.batch_id) if request.batch_id else None
        if replayed is not None:
            return pb.WriteReadingsResponse(accepted=replayed.accepted, duplicate=True, durable=replayed.durable)
        columns = decode_write_request(request, self._store)
        acknowledgement = await self._intake.write(columns, request.batch_id)
        if len(columns) >= RELEASE_AFTER_READINGS:
            self._release_memory_soon()
        return pb.WriteReadingsResponse(
            accepted=acknowledgement.accepted,
            duplicate=acknowledgement.duplicate,
            durable=acknowledgement.durable,
        )

    async def WatchReadings(self, request: pb.WatchReadingsRequest, context: grpc.aio.ServicerContext) -> None:
        """Streams WatchReadingsResponse messages already encoded (ingestor/wire.py), each written
        with a deadline: a subscriber that takes nothing for ``watch_stall_s`` is dropped."""
        try:
            check_categories(request.categories, "categories")
        except InvalidArgument as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        try:
            with self._hub.subscribe(frozenset(request.categories)) as subscription:
                # Tell the caller at once that it is subscribed, before any reading arrives.
                await context.send_initial_metadata(())
                code, details = await self._send_watch(subscription, context, request.columnar)
        except TooManySubscribers as error:
            code, details = grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
        # Unsubscribed by now: a status that waits behind unread messages holds no buffer.
        await context.abort(code, details)

    async def _send_watch(
        self, subscription: Subscription, context: grpc.aio.ServicerContext, columnar: bool
    ) -> tuple[grpc.StatusCode, str]:
        """Send what the subscription takes until it ends; the status to end the call with."""
        loop = asyncio.get_running_loop()
        phase = random.uniform(0, WATCH_INTERVAL_S)
        while True:
            try:
                await subscription.wait()
                if subscription.queued < MAX_WATCH_MESSAGE:
                    # Let readings gather until this subscriber's next turn: at most one message an
                    # interval unless they fill one. The turns of subscribers are spread over the
                    # interval, so that a batch stored does not wake them all at once.
                    await asyncio.sleep(WATCH_INTERVAL_S - (loop.time() - phase) % WATCH_INTERVAL_S)
                delivery = await subscription.take(MAX_WATCH_MESSAGE)
            except ShuttingDown:
                return grpc.StatusCode.UNAVAILABLE, "the ingestor is shutting down"
            if delivery.waited_s > self._watch_stall_s:
                lost = len(delivery) + delivery.missed + subscription.abandon()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FINAL_MESSAGE_TIMEOUT_S):
                        await context.write(encode_watch_missed(lost))
                log.warning("dropped a subscriber %.1f s behind", delivery.waited_s)
                return (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this stream fell {delivery.waited_s:.0f} s behind (the limit is {self._watch_stall_s:g} s) "
                    f"and ends: its last message counts the {lost} readings it lost",
                )
            try:
                async with asyncio.timeout(self._watch_stall_s):
                    await context.write(watch_message(delivery, columnar))
            except TimeoutError:
                # The message stays queued for the client; another one cannot be sent behind it.
                lost = subscription.abandon()
                log.warning("dropped a subscriber that took nothing for %g s", self._watch_stall_s)
                return (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this stream took no readings for {self._watch_stall_s:g} s and ends: it lost "
                    f"{lost} readings after its last message",
                )


def watch_message(delivery: Delivery, columnar: bool) -> bytes:
    """The WatchReadingsResponse of a delivery, in wire format.

    In the default form each piece's Reading messages are encoded once, and shared by every
    subscriber that takes the same piece; in the columnar form encoding is a copy of the columns.
    """
    if columnar:
        joined = join(delivery.batches) if delivery.batches else None
        columns = encode_watch_columns(joined.columns, joined.names) if joined is not None else b""
        return encode_watch_missed(delivery.missed) + columns
    readings = [piece.cached("readings", _encode_readings) for piece in delivery.batches]
    return b"".join([*readings, encode_watch_missed(delivery.missed)])  # type: ignore[list-item]


def _encode_readings(piece: NamedColumns) -> bytes:
    return encode_watch_readings(piece.columns, piece.names)
