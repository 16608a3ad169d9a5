"""Where every batch enters the store, generated or written, in memory-only or durable mode.

Memory only (no journal): a batch is in the store once :meth:`Intake.append` returns, and gone when
the process ends. Durable: it is also queued to the journal, and a write is acknowledged only once
the journal has it on disk.

Producers may name a batch with an id. The id is remembered with the batch's fingerprint
(``ingestor/fingerprints.py``): a retry with the same readings gets the same acknowledgement and
stores nothing, also while the first attempt is still being committed (it waits for that commit);
the id with other readings is refused (BatchIdReused) and stores nothing. The newest
``batch_id_window`` ids are remembered, in memory and, in durable mode, in the journal too.

Durable mode also bounds what waits for the disk (``ingestor/backlog.py``): a write waits for room
before it is stored, up to the time its caller gives it, and while the disk is full new batches are
refused before they are stored (DiskFull).

Not thread-safe: the ingestor uses it from its event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass

from ingestor.backlog import Backlog
from ingestor.errors import BatchIdReused, DiskFull, InvalidArgument
from ingestor.generator import QUEUE_FULL
from ingestor.journal import Journal, LoggedBatch, Submitted
from ingestor.readings import WrittenReadings
from ingestor.store import CODE_DTYPE, TIMESTAMP_DTYPE, VALUE_DTYPE, Columns, ReadingStore

log = logging.getLogger(__name__)

BATCH_ID_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")
LOGGED_BYTES_PER_READING = TIMESTAMP_DTYPE.itemsize + VALUE_DTYPE.itemsize + CODE_DTYPE.itemsize
DEFAULT_QUEUE_BYTES = 16 * 1024 * 1024
DEFAULT_WAIT_S = 10.0
"""How long a write waits for room in the journal's queue when its caller set no deadline."""


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    accepted: int
    duplicate: bool
    durable: bool


@dataclass(slots=True)
class _KnownBatch:
    accepted: int
    fingerprint: bytes | None
    """None for ids recovered from a format-1 data directory: then any readings are taken for a retry."""
    submitted: Submitted | None
    """The first attempt's fate while it may not be on disk yet (durable mode)."""


def validate_batch_id(batch_id: str) -> None:
    if BATCH_ID_PATTERN.fullmatch(batch_id) is None:
        raise InvalidArgument(
            f"batch_id must be 1 to 128 printable ASCII characters without spaces, got {batch_id[:140]!r}"
        )


class Intake:
    def __init__(
        self,
        store: ReadingStore,
        journal: Journal | None = None,
        batch_id_window: int = 100_000,
        known_batch_ids: Iterable[tuple[str, int]] = (),
        recovered: int = 0,
        fingerprints: Mapping[str, bytes] | None = None,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
    ) -> None:
        self._store = store
        self._journal = journal
        if journal is not None:
            store.log_category_assignments()
        self._window = batch_id_window
        fingerprints = fingerprints or {}
        self._known: OrderedDict[str, _KnownBatch] = OrderedDict(
            (batch_id, _KnownBatch(accepted, fingerprints.get(batch_id), None))
            for batch_id, accepted in known_batch_ids
        )
        self.backlog = Backlog(queue_bytes) if journal is not None else None
        """What waits for the disk (durable mode only)."""
        self.recovered = recovered
        """Readings restored from the data directory at start."""
        self.ingested: Counter[str] = Counter({"restored": store.total_ingested})
        """Readings stored by source: ``generator``, ``write``, and ``restored`` (the earlier run's
        ``total_ingested``, carried over at start): they add up to the store's ``total_ingested``."""
        self.rejected: Counter[str] = Counter()
        """Readings of refused writes, by reason (the refusal's kind, e.g. ``invalid_argument``)."""
        self.duplicates = 0
        """Writes answered as retries of a batch id already stored (nothing stored again)."""
        self.last_arrival_s: float | None = None
        """Wall-clock time the newest batch was stored."""

    @property
    def durable(self) -> bool:
        return self._journal is not None

    @property
    def remembered_batch_ids(self) -> int:
        return len(self._known)

    @property
    def disk_full(self) -> DiskFull | None:
        """Why new batches are refused before they are stored, while the data directory is full."""
        return self._journal.disk_full if self._journal is not None else None

    def data_dir_bytes(self) -> int:
        return self._journal.size_bytes() if self._journal is not None else 0

    def append(self, columns: Columns, batch_id: str = "", fingerprint: bytes | None = None) -> Future[None] | None:
        """Store a batch now; in durable mode also log it, and return the future of its acknowledgement.

        The store gives the batch its sequence numbers and the journal logs batches in the same
        order, so the log rebuilds exactly this store. It takes no room in the backlog: the
        event loop's callers go through :meth:`write` and :meth:`append_generated`.
        """
        submitted = self._submit(columns, batch_id, fingerprint)
        return submitted.acknowledged if submitted is not None else None

    def _submit(
        self, columns: Columns, batch_id: str = "", fingerprint: bytes | None = None, source: str = "write"
    ) -> Submitted | None:
        if self._journal is None:
            self._store.append(columns)
            self._arrived(columns, source)
            return None
        self._refuse_new_batches()
        start_seq = self._store.total_ingested
        self._store.append(columns)
        self._arrived(columns, source)
        assigned = tuple(self._store.take_category_assignments())
        return self._journal.submit(LoggedBatch(start_seq, columns, assigned, batch_id, fingerprint))

    def _arrived(self, columns: Columns, source: str) -> None:
        if len(columns):
            self.ingested[source] += len(columns)
            self.last_arrival_s = time.time()

    def count_rejected(self, reason: str, readings: int) -> None:
        """Count the readings of a write refused for ``reason`` (a bounded set of names)."""
        self.rejected[reason] += readings

    def _refuse_new_batches(self) -> None:
        if self._journal is None:
            return
        if self._journal.failure is not None:
            raise self._journal.failure
        if self._journal.disk_full is not None:
            raise self._journal.disk_full

    def append_generated(self, columns: Columns) -> None:
        """Store generated readings; nobody waits for their commit, but a failed one is logged.

        DiskFull (nothing stored) while the data directory is full; the generator then waits.
        """
        submitted = self._submit(columns, source="generator")
        if submitted is not None:
            if self.backlog is not None:
                size = len(columns) * LOGGED_BYTES_PER_READING
                self.backlog.take(size)
                self._release_once_logged(submitted, size)
            submitted.acknowledged.add_done_callback(_log_failure)

    def _release_once_logged(self, submitted: Submitted, size: int) -> None:
        """The batch's room in the backlog is given back once it is on disk (or the log stopped)."""
        backlog = self.backlog
        if backlog is None:
            return
        loop = asyncio.get_running_loop()

        def logged(_: Future[None]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for room any more
                loop.call_soon_threadsafe(backlog.release, size)

        submitted.logged.add_done_callback(logged)

    def generator_held_back(self) -> str | None:
        """Why the generator's next batch cannot be stored now, or None when it can."""
        if (full := self.disk_full) is not None:
            return str(full)
        if self.backlog is not None and self.backlog.full:
            return QUEUE_FULL
        return None

    async def wait_for_room(self) -> None:
        """Wait until the generator may try again: a commit freed room, or a moment passed."""
        if self.backlog is not None and self.disk_full is None:
            await self.backlog.wait_until_open()
        else:
            await asyncio.sleep(0.25)  # the journal tries its commit again twice a second

    def generated_readings_that_fit(self) -> int | None:
        """How many generated readings the backlog has room for now; None in memory-only mode."""
        if self.backlog is None:
            return None
        return max(0, self.backlog.limit_bytes - self.backlog.pending_bytes) // LOGGED_BYTES_PER_READING

    async def replay(self, batch_id: str, fingerprint: bytes | None = None) -> Acknowledgement | None:
        """The acknowledgement of the batch named ``batch_id`` when it is known (once it is safe to
        send), None when it is not: then its readings have to be stored. BatchIdReused when the id
        names other readings than ``fingerprint`` says (None: not compared)."""
        validate_batch_id(batch_id)
        known = self._known.get(batch_id)
        if known is None:
            return None
        if fingerprint is not None and known.fingerprint is not None and fingerprint != known.fingerprint:
            raise BatchIdReused(
                f"batch_id {batch_id!r} was used before for other readings: a retry must carry the same "
                "readings, and other readings need another id (nothing was stored)"
            )
        submitted = known.submitted
        if submitted is not None:
            # Shielded: a caller that gives up does not take the commit down with it.
            try:
                await asyncio.shield(asyncio.wrap_future(submitted.acknowledged))
            except DiskFull:
                # Refused to its first sender, and logged once space is freed: until then, refused again.
                if not submitted.logged.done() and self.disk_full is not None:
                    raise
                await asyncio.shield(asyncio.wrap_future(submitted.logged))
        return Acknowledgement(known.accepted, duplicate=True, durable=self.durable)

    async def write(
        self,
        readings: WrittenReadings | Columns,
        batch_id: str = "",
        fingerprint: bytes | None = None,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> Acknowledgement:
        """Store a producer's batch and return its acknowledgement once it is safe to send.

        In durable mode the batch first waits for room in the journal's queue, at most ``wait_s``
        (Backpressure past it); new names enter the store's dictionary only once it has room.
        """
        if batch_id and (replayed := await self.replay(batch_id, fingerprint)) is not None:
            self.duplicates += 1
            return replayed
        self._refuse_new_batches()
        size = len(readings) * LOGGED_BYTES_PER_READING
        if self.backlog is not None:
            await self.backlog.reserve(size, wait_s)
            if batch_id in self._known:  # the same id arrived while this one waited for room
                self.backlog.release(size)
                return await self.write(readings, batch_id, fingerprint, wait_s)
        try:
            columns = readings.encode(self._store) if isinstance(readings, WrittenReadings) else readings
            submitted = self._submit(columns, batch_id, fingerprint)
        except BaseException:
            if self.backlog is not None:
                self.backlog.release(size)
            raise
        if submitted is None:
            if batch_id:
                self._remember(batch_id, _KnownBatch(len(columns), fingerprint, None))
            return Acknowledgement(len(columns), duplicate=False, durable=False)
        self._release_once_logged(submitted, size)
        if batch_id:
            self._remember(batch_id, _KnownBatch(len(columns), fingerprint, submitted))
        try:
            await asyncio.shield(asyncio.wrap_future(submitted.acknowledged))
        except DiskFull:
            raise  # the id stays known: the batch is in the store and is logged once space is freed
        except Exception:
            if batch_id:
                self._known.pop(batch_id, None)
            raise
        return Acknowledgement(len(columns), duplicate=False, durable=True)

    def _remember(self, batch_id: str, known: _KnownBatch) -> None:
        self._known[batch_id] = known
        while len(self._known) > self._window:
            self._known.popitem(last=False)


def _log_failure(committed: Future[None]) -> None:
    error = None if committed.cancelled() else committed.exception()
    if error is not None and not isinstance(error, DiskFull):  # the journal logs a full disk itself
        log.error("generated readings were not written to the data directory: %s", error)
