"""IngestorService: each RPC reads its request, calls the domain objects and builds its response.

Reading requests is ``ingestor/requests.py``'s job, status codes ``ingestor/rpc_errors.py``'s.
ExportReadings and WatchReadings yield (or write) messages already encoded (``ingestor/wire.py``),
which the server sends as they are (see ``server.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Sequence

import grpc
import numpy as np

from ingestor import requests
from ingestor.archiver import Archiver
from ingestor.errors import FeatureOff, IngestorError
from ingestor.export import ExportTurns, csv_messages, export_messages
from ingestor.fingerprints import fingerprint as batch_fingerprint
from ingestor.generator import GeneratorControl
from ingestor.history import buffer_oldest_ns, caught_up
from ingestor.intake import DEFAULT_WAIT_S, Intake
from ingestor.memory import ReleaseAfterLargeWrites
from ingestor.pages import newest_page
from ingestor.partials import PartialTable
from ingestor.pushdown import aggregate_partials
from ingestor.readings import read_write_request
from ingestor.replay import replay_deliveries
from ingestor.rollups import MINUTE_NS, Rollups
from ingestor.rpc_errors import rpc_errors
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from ingestor.watch import DEFAULT_BUFFER_READINGS, Delivery, WatchHub
from ingestor.watch_stream import DEFAULT_STALL_S, MessageForm, send_deliveries

Context = grpc.aio.ServicerContext

DEFAULT_CONCURRENT_EXPORTS = 4


class IngestorServicer(pb_grpc.IngestorServiceServicer):
    def __init__(
        self,
        store: ReadingStore,
        generator: GeneratorControl,
        intake: Intake | None = None,
        hub: WatchHub | None = None,
        watch_stall_s: float = DEFAULT_STALL_S,
        max_concurrent_exports: int = DEFAULT_CONCURRENT_EXPORTS,
        archiver: Archiver | None = None,
        rollups: Rollups | None = None,
    ) -> None:
        self._store = store
        self._generator = generator
        self._intake = intake or Intake(store)
        self._hub = hub or WatchHub(store, DEFAULT_BUFFER_READINGS)
        self._watch_stall_s = watch_stall_s
        self._memory = ReleaseAfterLargeWrites()
        self._export_turns = ExportTurns(max_concurrent_exports)
        self._archiver = archiver
        self._rollups = rollups

    @rpc_errors
    async def StartIngestion(
        self,
        request: pb.StartIngestionRequest,
        context: Context[pb.StartIngestionRequest, pb.StartIngestionResponse],
    ) -> pb.StartIngestionResponse:
        started = self._generator.start(requests.run_config(request, self._generator.default_config))
        return pb.StartIngestionResponse(already_running=not started)

    @rpc_errors
    async def StopIngestion(
        self,
        request: pb.StopIngestionRequest,
        context: Context[pb.StopIngestionRequest, pb.StopIngestionResponse],
    ) -> pb.StopIngestionResponse:
        stopped = await self._generator.stop()
        return pb.StopIngestionResponse(already_stopped=not stopped)

    @rpc_errors
    async def GetStatus(
        self, request: pb.GetStatusRequest, context: Context[pb.GetStatusRequest, pb.GetStatusResponse]
    ) -> pb.GetStatusResponse:
        store, generator, intake = self._store, self._generator, self._intake
        archive = self._archiver.status() if self._archiver is not None else None
        return pb.GetStatusResponse(
            running=generator.running,
            total_ingested=store.total_ingested,
            buffered=store.buffered,
            evicted=store.evicted,
            capacity=store.capacity,
            rate_hz=generator.rate_hz,
            categories=generator.categories,
            seed=generator.config.seed,
            configured=generator.config != generator.default_config,
            generator_error=generator.failure or "",
            durable=intake.durable,
            data_dir_bytes=intake.data_dir_bytes(),
            recovered=intake.recovered,
            remembered_batch_ids=intake.remembered_batch_ids,
            achieved_rate_hz=generator.achieved_rate_hz(),
            generator_held_back=generator.held_back or "",
            journal_queue_bytes=intake.backlog.pending_bytes if intake.backlog is not None else 0,
            disk_full=intake.disk_full is not None,
            late=store.lateness.late,
            late_by_category=dict(store.lateness.by_category),
            sealed_blocks=len(store.blocks),
            partial_bytes=store.blocks.nbytes,
            archiving=archive is not None,
            archived=archive.archived if archive else 0,
            archive_pending=archive.pending if archive else 0,
            evicted_unarchived=archive.evicted_unarchived if archive else 0,
            archive_error=archive.error if archive else "",
        )

    @rpc_errors
    async def ListReadings(
        self, request: pb.ListReadingsRequest, context: Context[pb.ListReadingsRequest, pb.ListReadingsResponse]
    ) -> pb.ListReadingsResponse:
        page_size = requests.page_size(request)
        page = newest_page(self._store, requests.reading_filter(request), page_size, request.page_token)
        return pb.ListReadingsResponse(
            readings=_reading_messages(page.columns, self._store.categories),
            next_page_token=page.next_page_token,
        )

    @rpc_errors
    async def ExportReadings(
        self, request: pb.ExportReadingsRequest, context: Context[pb.ExportReadingsRequest, bytes]
    ) -> AsyncIterator[bytes]:
        query = requests.export_query(request)
        async with self._export_turns.turn(query):
            if query.file_format == pb.EXPORT_FORMAT_CSV:
                async for line_message in csv_messages(self._store, query):
                    yield line_message
                return
            for message in export_messages(self._store, query):
                yield message

    @rpc_errors
    async def WriteReadings(
        self, request: pb.WriteReadingsRequest, context: Context[pb.WriteReadingsRequest, pb.WriteReadingsResponse]
    ) -> pb.WriteReadingsResponse:
        # Validated and fingerprinted before anything is stored; names enter the dictionary only
        # for readings that are stored now, not for a retry.
        try:
            readings = read_write_request(request)
            fingerprint = batch_fingerprint(readings) if request.batch_id else None
            # Only durable mode has a queue to wait for.
            wait_s = _wait_s(context) if self._intake.durable else DEFAULT_WAIT_S
            acknowledgement = await self._intake.write(readings, request.batch_id, fingerprint, wait_s)
        except Exception as error:
            self._intake.count_rejected(rejection_reason(error), _readings_in(request))
            raise
        self._memory.wrote(len(readings))
        return pb.WriteReadingsResponse(
            accepted=acknowledgement.accepted,
            duplicate=acknowledgement.duplicate,
            durable=acknowledgement.durable,
        )

    @rpc_errors
    async def WatchReadings(
        self, request: pb.WatchReadingsRequest, context: Context[pb.WatchReadingsRequest, bytes]
    ) -> None:
        """Each message written with a deadline: a subscriber that takes nothing for
        ``watch_stall_s`` is dropped (``ingestor/watch_stream.py``)."""
        # The stream ends by an error that leaves this block first: unsubscribed by then, a status
        # that waits behind unread messages holds no buffer.
        categories = requests.watch_categories(request)
        late_flags = request.columnar and request.late_flags
        with self._hub.subscribe(categories, late_flags) as subscription:
            # Live readings start here: a replay covers the held ones before, up to this number.
            live_from = self._store.total_ingested
            replay: Iterable[Delivery] = ()
            if request.HasField("after_sequence"):
                replay = replay_deliveries(self._store, categories, request.after_sequence, live_from, late_flags)
            # Tell the caller at once that it is subscribed, before any reading arrives, and from
            # which sequence number on: an export below it complements the stream exactly.
            await context.send_initial_metadata((("next-sequence", str(live_from)),))
            form = MessageForm(columnar=request.columnar, sequences=request.sequences)
            await send_deliveries(subscription, context.write, form, self._watch_stall_s, replay)

    @rpc_errors
    async def AggregateReadings(
        self,
        request: pb.AggregateReadingsRequest,
        context: Context[pb.AggregateReadingsRequest, pb.AggregateReadingsResponse],
    ) -> pb.AggregateReadingsResponse:
        """Computed without awaiting: one snapshot of the ring (``ingestor/pushdown.py``)."""
        flt, bucket_ns = requests.reading_filter(request), requests.bucket_ns(request)
        aggregation = aggregate_partials(self._store, flt, bucket_ns)
        return pb.AggregateReadingsResponse(
            partials=_partial_columns(aggregation.from_blocks, aggregation.from_readings),
            categories=self._store.categories,
            readings_read=aggregation.readings_read,
            blocks_used=aggregation.blocks_used,
        )

    @rpc_errors
    async def GetHistory(
        self, request: pb.GetHistoryRequest, context: Context[pb.GetHistoryRequest, pb.GetHistoryResponse]
    ) -> pb.GetHistoryResponse:
        """Every reading stored before the call is in the answer: it waits (briefly) for the rollups
        to take in what was stored, and the buffer's oldest event time is read at the same moment."""
        if self._rollups is None:
            raise FeatureOff("rollups are off on this ingestor (INGESTOR_ROLLUPS=false)")
        flt, bucket = requests.reading_filter(request), requests.bucket_minutes(request)
        oldest = buffer_oldest_ns(self._store)
        await caught_up(self._rollups, self._store.total_ingested)
        history = await asyncio.to_thread(
            self._rollups.query, sorted(flt.categories), flt.since_ns, flt.until_ns, bucket
        )
        rows = len(history.partials)
        if request.max_rows and rows > request.max_rows:
            response = pb.GetHistoryResponse(rows=rows)
        else:
            response = pb.GetHistoryResponse(
                partials=_partial_columns(history.partials), categories=history.categories, rows=rows
            )
        if oldest is not None:
            response.buffer_oldest.FromNanoseconds(oldest)
        if (first := self._rollups.first_kept_minute) is not None:
            response.retained_since.FromNanoseconds(first * MINUTE_NS)
        return response


def _partial_columns(*tables: PartialTable) -> pb.PartialColumns:
    def column(name: str, dtype: str) -> bytes:
        return b"".join(np.ascontiguousarray(getattr(table, name), dtype=dtype).tobytes() for table in tables)

    return pb.PartialColumns(
        category_codes=column("codes", "<u2"),
        keys=column("keys", "<i8"),
        counts=column("count", "<i8"),
        sums=column("total", "<f8"),
        minimums=column("minimum", "<f8"),
        maximums=column("maximum", "<f8"),
        first_timestamps_ns=column("first_ns", "<i8"),
        last_timestamps_ns=column("last_ns", "<i8"),
        means=column("mean", "<f8"),
        m2s=column("m2", "<f8"),
    )


def rejection_reason(error: Exception) -> str:
    """A refusal's kind as a metric label: its class in snake case (``DiskFull``: ``disk_full``);
    ``internal`` for anything that is not a refusal of the ingestor's own."""
    if not isinstance(error, IngestorError):
        return "internal"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def _readings_in(request: pb.WriteReadingsRequest) -> int:
    return len(request.readings) + len(request.columns.timestamps_ns) // 8


def _wait_s(context: Context[pb.WriteReadingsRequest, pb.WriteReadingsResponse]) -> float:
    """How long a write may wait for room in the journal's queue: until shortly before its deadline,
    so that the caller hears RESOURCE_EXHAUSTED rather than its own DEADLINE_EXCEEDED."""
    remaining = context.time_remaining()
    if remaining is None:
        return DEFAULT_WAIT_S
    return max(0.0, remaining - min(0.5, remaining * 0.2))


def _reading_messages(columns: Columns, names: Sequence[str]) -> list[pb.Reading]:
    seconds, nanos = np.divmod(columns.timestamps_ns, 1_000_000_000)
    return [
        pb.Reading(timestamp={"seconds": s, "nanos": n}, value=v, category=names[c])
        for s, n, v, c in zip(
            seconds.tolist(), nanos.tolist(), columns.values.tolist(), columns.codes.tolist(), strict=True
        )
    ]
