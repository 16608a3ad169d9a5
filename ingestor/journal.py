"""The journal's writer: batches committed in groups, in order, each acknowledged once on disk.

Group commit: one writer thread owns the connection to the log (``ingestor/journal_file.py``). It
takes every batch queued while the previous commit ran and commits them all in one transaction,
then resolves each batch's future: a future is done only once its batch is on disk. Commits are in
submission order, so the log never has a hole. A category the dictionary gives out (a new name, or
a freed code given to another name: every reading that carried its old name was evicted before, so
no row still held needs it) changes in the same transaction as the first batch that uses it.

Compaction: generated batches can be tiny (one reading a tick at 1 Hz), and a million one-reading rows
would take long to read back. Every ``COMPACT_RUN`` consecutive small rows are merged into one row,
in the transaction that completes the run.

Retention: every commit deletes the rows whose readings the store has evicted, so the file holds at
most ``capacity`` readings plus the batch that straddles the eviction boundary (SQLite reuses the
freed pages). Batch ids are remembered, with their fingerprints, for the newest ``batch_id_window``
batches.

A full disk is not the end: the commit that finds it full is rolled back, its batches' callers are
told (DiskFull), and the writer tries the same commit again every ``DISK_FULL_RETRY_S`` until space
is freed; meanwhile :attr:`Journal.disk_full` says so, and the intake refuses new batches before they
reach the store. Those batches are in the store already, so the log must get them, in order, before
anything else. Any other failed commit stops the log for good (:attr:`Journal.failure`).
Knows nothing of gRPC.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from pathlib import Path

from ingestor.errors import DiskFull, JournalError
from ingestor.journal_file import (
    Recovered,
    open_database,
    read_back,
    records_arrivals,
    size_bytes,
    trim,
    write_rollups,
)
from ingestor.partials import merge_partials
from ingestor.rollups import Rollups
from ingestor.store import CODE_DTYPE, TIMESTAMP_DTYPE, VALUE_DTYPE, Columns
from ingestor.wire import column_bytes

log = logging.getLogger(__name__)

COMPACT_BELOW = 4096
"""Rows of fewer readings than this are small, and merged once COMPACT_RUN of them follow each other."""
COMPACT_RUN = 256
DISK_FULL_RETRY_S = 0.5
"""How often a commit that found the disk full is tried again."""


@dataclass(frozen=True, slots=True)
class LoggedBatch:
    """A batch as the store numbered it, with the dictionary entries it added."""

    start_seq: int
    columns: Columns
    assigned_categories: tuple[tuple[int, str], ...] = ()
    """(code, name) the dictionary gave out since the previous batch, new names or freed codes reused."""
    batch_id: str = ""
    fingerprint: bytes | None = None
    """Of the readings, with ``batch_id`` (ingestor/fingerprints.py)."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """What becomes of a submitted batch."""

    batch: LoggedBatch
    acknowledged: Future[None]
    """Done once the batch is on disk. Fails with DiskFull as soon as a commit of it finds the disk
    full (the batch stays queued, and is logged once space is freed), or with JournalError."""
    logged: Future[None]
    """Done once the batch is on disk; fails only with JournalError, when the log stopped without it."""


class Journal:
    """The durable log of stored batches in a data directory, and the thread that writes to it."""

    def __init__(self, data_dir: Path, capacity: int, batch_id_window: int, rollups: Rollups | None = None) -> None:
        """Open (or create) the log in ``data_dir``; only one process can have it open at a time."""
        if capacity < 1 or batch_id_window < 1:
            raise ValueError("capacity and batch_id_window must be at least 1")
        self.data_dir = data_dir
        self.capacity = capacity
        self.batch_id_window = batch_id_window
        self._db, self._lock = open_database(data_dir)
        self._queue: list[Submitted] = []
        self._wakeup = threading.Condition()
        self._closing = False
        self._failure: JournalError | None = None
        self._disk_full: DiskFull | None = None
        self._writer: threading.Thread | None = None
        # [start, end) of the consecutive small rows committed since the last merge, and how many.
        self._small_run = (0, 0, 0)
        self.on_commit: Callable[[float, int], None] | None = None
        """Told each successful commit's duration (seconds) and how many batches it took, from the
        writer thread."""
        self._arrivals = records_arrivals(self._db)
        self._expired_below = 0
        """Rows of readings below this sequence number are to be deleted (retention by age)."""
        self._deleted_below = 0
        self._committed_total = 0
        self._rollups = rollups
        self._names: list[str] = []
        """The store's dictionary as of the last batch committed: the names of the batches' codes."""

    @property
    def committed_total(self) -> int:
        """Readings numbered below this are on disk: they survive a crash (the archive takes no others)."""
        return self._committed_total

    def load(self, max_age_ns: int | None = None) -> Recovered:
        """Read back what the log holds (with ``max_age_ns``, only the rows that arrived within it);
        call before :meth:`start`."""
        cutoff = time.time_ns() - max_age_ns if max_age_ns is not None else None
        try:
            recovered = read_back(self._db, self.capacity, cutoff)
            self._committed_total = recovered.total_ingested
            self._names = list(recovered.categories)
            if self._rollups is not None:
                self._rollups.restore(recovered.rollup_categories, recovered.rollups)
                self._rollups.covered_until = recovered.total_ingested
            return recovered
        except sqlite3.Error as error:
            raise JournalError(f"cannot read data directory {str(self.data_dir)!r}: {error}") from error

    def start(self) -> None:
        """Start the writer thread; batches can be submitted from then on."""
        try:
            trim(self._db, self.capacity)
        except sqlite3.Error as error:
            if not is_disk_full(error):
                raise JournalError(f"cannot trim data directory {str(self.data_dir)!r}: {error}") from error
            # What the file holds is served all the same; writes find the disk full when they come.
            log.warning("data directory %s is full: it is served as it is: %s", self.data_dir, error)
        self._writer = threading.Thread(target=self._write_loop, name="journal-writer", daemon=True)
        self._writer.start()

    def submit(self, batch: LoggedBatch) -> Submitted:
        """Queue a batch (already in the store); see :class:`Submitted` for what becomes of it."""
        submitted = Submitted(batch, Future(), Future())
        with self._wakeup:
            if self._failure is not None:
                raise self._failure
            if self._closing or self._writer is None:
                raise JournalError("the data directory is not open for writing")
            self._queue.append(submitted)
            self._wakeup.notify()
        return submitted

    def expire_below(self, sequence: int) -> None:
        """The store evicted the readings below ``sequence`` by age: delete their rows (with the next
        commit, or by themselves when none comes)."""
        with self._wakeup:
            if sequence > self._expired_below:
                self._expired_below = sequence
                self._wakeup.notify()

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the file (SQLite checkpoints it)."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        if self._writer is not None:
            self._writer.join()
        self._db.close()
        self._lock.release()

    @property
    def failure(self) -> JournalError | None:
        return self._failure

    @property
    def disk_full(self) -> DiskFull | None:
        """Set while commits find the disk full, until one goes through again."""
        return self._disk_full

    def size_bytes(self) -> int:
        """Bytes the data directory takes now (the database and its write-ahead log)."""
        return size_bytes(self.data_dir)

    def _write_loop(self) -> None:
        unlogged: list[Submitted] = []  # in the store but not in the log: their commit found the disk full
        while True:
            with self._wakeup:
                if unlogged:
                    self._wakeup.wait_for(lambda: self._closing, timeout=DISK_FULL_RETRY_S)
                else:
                    while not self._queue and not self._closing and self._expired_below <= self._deleted_below:
                        self._wakeup.wait()
                if not self._queue and not unlogged:
                    expired_below = self._expired_below
                    # Closing still deletes the rows of readings expired just before.
                    if self._closing and expired_below <= self._deleted_below:
                        return
                group, self._queue = unlogged + self._queue, []
            if not group:
                self._delete_expired(expired_below)
                continue
            started = time.perf_counter()
            try:
                self._commit([submitted.batch for submitted in group])
            except Exception as error:
                if not is_disk_full(error):
                    self._fail(group, error)
                    return
                unlogged = group
                self._stall(group, error)
                if self._closing:
                    log.error("stopping with %d batches not written: the data directory is full", len(group))
                    return
                continue
            unlogged = []
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started, len(group))
            if self._disk_full is not None:
                log.warning("the data directory has room again: writes are accepted")
                self._disk_full = None
            for submitted in group:
                _settle(submitted.logged)
                _settle(submitted.acknowledged)

    def _delete_expired(self, below: int) -> None:
        """Delete the rows of readings all below ``below`` (evicted by age) in a transaction of their own."""
        try:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM batches WHERE end_seq <= ?", (below,))
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            log.warning("expired rows not deleted yet: %s", error)  # the next commit deletes them
        self._deleted_below = max(self._deleted_below, below)

    def _commit(self, batches: Sequence[LoggedBatch]) -> None:
        db = self._db
        total = max(batch.start_seq + len(batch.columns) for batch in batches)
        expired_below = self._expired_below
        evicted_below = max(total - self.capacity, expired_below)
        arrived_ns = time.time_ns()
        small_run = self._small_run
        deltas = []
        db.execute("BEGIN")
        try:
            for batch in batches:
                for code, name in batch.assigned_categories:
                    self._names.extend([""] * (code + 1 - len(self._names)))
                    self._names[code] = name
                    # A reused code names something else now, and a name that came back may have
                    # had another code before: no held reading carries either of the old entries.
                    db.execute("DELETE FROM categories WHERE code = ? OR name = ?", (code, name))
                    db.execute("INSERT INTO categories (code, name) VALUES (?, ?)", (code, name))
                end_seq = batch.start_seq + len(batch.columns)
                if end_seq > evicted_below and len(batch.columns):
                    columns = batch.columns
                    row = (
                        end_seq,
                        batch.start_seq,
                        column_bytes(columns.timestamps_ns, TIMESTAMP_DTYPE),
                        column_bytes(columns.values, VALUE_DTYPE),
                        column_bytes(columns.codes, CODE_DTYPE),
                    )
                    _insert_row(db, row, arrived_ns, self._arrivals)
                    small_run = _extend_run(small_run, batch.start_seq, end_seq)
                if self._rollups is not None and len(batch.columns):
                    columns = batch.columns
                    deltas.append(
                        self._rollups.delta(columns.timestamps_ns, columns.values, columns.codes, self._names)
                    )
                if batch.batch_id:
                    db.execute(
                        "INSERT INTO batch_ids (batch_id, accepted, fingerprint) VALUES (?, ?, ?)",
                        (batch.batch_id, len(batch.columns), batch.fingerprint),
                    )
            if small_run[2] >= COMPACT_RUN:
                _merge_rows(db, small_run[0], small_run[1], self._arrivals)
                small_run = (0, 0, 0)
            db.execute("DELETE FROM batches WHERE end_seq <= ?", (evicted_below,))
            db.execute(
                "DELETE FROM batch_ids WHERE position <= (SELECT MAX(position) FROM batch_ids) - ?",
                (self.batch_id_window,),
            )
            db.execute(
                "INSERT INTO counters (name, value) VALUES ('total_ingested', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (total,),
            )
            delta = merge_partials(deltas) if deltas else None
            if self._rollups is not None and delta is not None and len(delta):
                # The rows as they are once the delta is in, written with the batches they count;
                # the rollups in memory change only once the commit went through.
                rows, first_kept = self._rollups.after_merge(delta)
                write_rollups(db, rows, self._rollups.names(), first_kept)
            self._sync()
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled a failed COMMIT back by itself
                db.execute("ROLLBACK")
            raise
        self._small_run = small_run
        self._deleted_below = max(self._deleted_below, expired_below)
        self._committed_total = total
        if self._rollups is not None:
            if delta is not None:
                self._rollups.merge(delta)
            self._rollups.covered_until = total

    def _sync(self) -> None:
        """COMMIT: with synchronous=FULL in WAL mode it returns only after the log is fsync'd.

        Nothing is acknowledged before this returns (tests hold it here to show that).
        """
        self._db.execute("COMMIT")

    def _stall(self, group: list[Submitted], error: Exception) -> None:
        if self._disk_full is None:
            log.warning(
                "the data directory is full: writes are refused until space is freed (tried again every %s s): %s",
                DISK_FULL_RETRY_S,
                error,
            )
        self._disk_full = DiskFull(f"the data directory is full ({error}): writes resume once space is freed there")
        for submitted in group:
            _settle(submitted.acknowledged, self._disk_full)

    def _fail(self, group: list[Submitted], error: Exception) -> None:
        # Like a database that cannot fsync, stop rather than guess what reached the disk: the
        # batches are not acknowledged, and a restart recovers what was committed.
        log.error("data directory commit failed; no further batches are acknowledged: %s", error)
        with self._wakeup:
            self._failure = JournalError(f"the data directory cannot be written: {error}")
            group = group + self._queue
            self._queue = []
        for submitted in group:
            _settle(submitted.logged, self._failure)
            _settle(submitted.acknowledged, self._failure)


def is_disk_full(error: BaseException) -> bool:
    """SQLITE_FULL: a write found no room on the disk (ENOSPC), as opposed to an I/O error."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and code is not None and code & 0xFF == sqlite3.SQLITE_FULL


def _settle(future: Future[None], error: BaseException | None = None) -> None:
    # Settled once: an acknowledgement that failed with DiskFull stays failed when the batch is logged later.
    with contextlib.suppress(InvalidStateError):
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _extend_run(run: tuple[int, int, int], start_seq: int, end_seq: int) -> tuple[int, int, int]:
    """The run of small rows after the row [start_seq, end_seq) was added."""
    if end_seq - start_seq >= COMPACT_BELOW:
        return (0, 0, 0)
    run_start, run_end, rows = run
    if rows and run_end == start_seq:
        return (run_start, end_seq, rows + 1)
    return (start_seq, end_seq, 1)


def _merge_rows(db: sqlite3.Connection, start_seq: int, end_seq: int, arrivals: bool) -> None:
    """Replace the rows holding readings [start_seq, end_seq) by one row: same readings, fewer rows
    (arriving when the newest of them did)."""
    where = "WHERE end_seq > ? AND end_seq <= ?"
    arrived = "arrived_ns" if arrivals else "NULL"
    rows = db.execute(
        f"SELECT start_seq, timestamps_ns, vals, codes, {arrived} FROM batches {where} ORDER BY end_seq",
        (start_seq, end_seq),
    ).fetchall()
    if len(rows) < 2:
        return
    db.execute(f"DELETE FROM batches {where}", (start_seq, end_seq))
    merged = (end_seq, rows[0][0], *(b"".join(row[column] for row in rows) for column in (1, 2, 3)))
    newest = max((row[4] for row in rows if row[4] is not None), default=None)
    _insert_row(db, merged, newest, arrivals)


_INSERT = "INSERT INTO batches (end_seq, start_seq, timestamps_ns, vals, codes) VALUES (?, ?, ?, ?, ?)"
_INSERT_ARRIVED = (
    "INSERT INTO batches (end_seq, start_seq, timestamps_ns, vals, codes, arrived_ns) VALUES (?, ?, ?, ?, ?, ?)"
)


def _insert_row(db: sqlite3.Connection, row: tuple[object, ...], arrived_ns: int | None, arrivals: bool) -> None:
    """Insert a row (end_seq, start_seq, timestamps, values, codes), with its arrival time when the
    file records them."""
    if arrivals:
        db.execute(_INSERT_ARRIVED, (*row, arrived_ns))
    else:
        db.execute(_INSERT, row)
