"""The durable log of stored batches: one SQLite file in the data directory. Knows nothing of gRPC.

Each batch is one row holding its columns as the raw little-endian buffers of the wire format
(int64 timestamps, float64 values, uint16 category codes), so a batch of 10,000 readings is one
insert of 180 kB, not 10,000 inserts. The category dictionary is a table of its own, changed in
the same transaction as the first batch that uses a new name (or a freed code given to another
name: every reading that carried its old name was evicted before, so no row still held needs it).

SQLite runs in WAL mode with ``synchronous=FULL``: COMMIT returns only after the write-ahead log is
fsync'd, and the log's frame checksums make SQLite ignore a torn last transaction when it opens the
file again (a power cut mid-append loses that transaction, never the ones before, never garbage).

Group commit: one writer thread owns the connection. It takes every batch queued while the previous
commit ran and commits them all in one transaction, then resolves each batch's future: a future is
done only once its batch is on disk. Commits are in submission order, so the log never has a hole.

Compaction: generated batches can be tiny (one reading a tick at 1 Hz), and a million one-reading rows
would take seconds to read back. Every ``COMPACT_RUN`` consecutive small rows are merged into one row,
in the transaction that completes the run.

Retention: every commit deletes the rows whose readings the store has evicted, so the file holds at
most ``capacity`` readings plus the batch that straddles the eviction boundary (SQLite reuses the
freed pages). Batch ids are remembered for the newest ``batch_id_window`` batches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingestor.categories import FREE
from ingestor.errors import JournalError
from ingestor.store import CODE_DTYPE, TIMESTAMP_DTYPE, VALUE_DTYPE, Columns

log = logging.getLogger(__name__)

FILE_NAME = "readings.sqlite3"
FORMAT_VERSION = 1
"""PRAGMA user_version of the file; a file written by a newer format is refused, not misread."""
COMPACT_BELOW = 4096
"""Rows of fewer readings than this are small, and merged once COMPACT_RUN of them follow each other."""
COMPACT_RUN = 256
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""After a checkpoint, SQLite truncates the write-ahead log back to at most this many bytes."""
DIR_MODE = 0o700
FILE_MODE = 0o600
"""Modes of the data directory and of the log when the ingestor creates them: its own user's only."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    end_seq INTEGER PRIMARY KEY,  -- sequence number after the batch's last reading
    start_seq INTEGER NOT NULL,
    timestamps_ns BLOB NOT NULL,
    vals BLOB NOT NULL,
    codes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS categories (code INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS batch_ids (
    position INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    accepted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class LoggedBatch:
    """A batch as the store numbered it, with the dictionary entries it added."""

    start_seq: int
    columns: Columns
    assigned_categories: tuple[tuple[int, str], ...] = ()
    """(code, name) the dictionary gave out since the previous batch, new names or freed codes reused."""
    batch_id: str = ""


@dataclass(frozen=True, slots=True)
class Recovered:
    """What the log holds: the counters, the dictionary, the newest readings and the batch ids."""

    total_ingested: int
    categories: list[str]
    """Names by code; ``ingestor.categories.FREE`` where a code named nothing."""
    columns: Columns
    batch_ids: list[tuple[str, int]]
    """(batch id, readings accepted), oldest first."""


class Journal:
    def __init__(self, data_dir: Path, capacity: int, batch_id_window: int) -> None:
        """Open (or create) the log in ``data_dir``; only one process can have it open at a time."""
        if capacity < 1 or batch_id_window < 1:
            raise ValueError("capacity and batch_id_window must be at least 1")
        self.data_dir = data_dir
        self.capacity = capacity
        self.batch_id_window = batch_id_window
        try:
            _make_private(data_dir)
            self._db = _connect(data_dir / FILE_NAME)
        except (OSError, sqlite3.Error) as error:
            raise JournalError(f"cannot use data directory {str(data_dir)!r}: {error}") from error
        self._queue: list[tuple[LoggedBatch, Future[None]]] = []
        self._wakeup = threading.Condition()
        self._closing = False
        self._failure: JournalError | None = None
        self._writer: threading.Thread | None = None
        # [start, end) of the consecutive small rows committed since the last merge, and how many.
        self._small_run = (0, 0, 0)

    def load(self) -> Recovered:
        """Read back what the log holds; call before :meth:`start`."""
        try:
            return self._load()
        except sqlite3.Error as error:
            raise JournalError(f"cannot read data directory {str(self.data_dir)!r}: {error}") from error

    def _load(self) -> Recovered:
        db = self._db
        row = db.execute("SELECT value FROM counters WHERE name = 'total_ingested'").fetchone()
        total = row[0] if row else 0
        named = dict(db.execute("SELECT code, name FROM categories").fetchall())
        # Codes freed by the earlier run are holes; the store refuses a held reading that carries one.
        categories = [named.get(code, FREE) for code in range(max(named, default=-1) + 1)]
        rows = db.execute(
            "SELECT start_seq, end_seq, timestamps_ns, vals, codes FROM batches WHERE end_seq > ? ORDER BY end_seq",
            (total - self.capacity,),
        ).fetchall()
        # Rows follow each other without a gap: commits happen in order and a failed one stops the log.
        # Should one be missing anyway, keep the newest contiguous run rather than misnumber readings.
        first = len(rows)
        expected_end = total
        while first > 0 and rows[first - 1][1] == expected_end:
            first -= 1
            expected_end = rows[first][0]
        if first:
            log.warning("data dir: %d batches before sequence %d are not contiguous: skipped", first, expected_end)
        rows = rows[first:]
        for start_seq, end_seq, timestamps, values, codes in rows:
            count = end_seq - start_seq
            sizes = (len(timestamps), len(values), len(codes))
            if sizes != (count * TIMESTAMP_DTYPE.itemsize, count * VALUE_DTYPE.itemsize, count * CODE_DTYPE.itemsize):
                raise JournalError(f"batch [{start_seq}, {end_seq}) in the data directory has columns of {sizes} bytes")
        columns = Columns(
            np.frombuffer(b"".join(row[2] for row in rows), dtype=TIMESTAMP_DTYPE),
            np.frombuffer(b"".join(row[3] for row in rows), dtype=VALUE_DTYPE),
            np.frombuffer(b"".join(row[4] for row in rows), dtype=CODE_DTYPE),
        )
        batch_ids = db.execute("SELECT batch_id, accepted FROM batch_ids ORDER BY position").fetchall()
        return Recovered(total, categories, columns, batch_ids)

    def start(self) -> None:
        """Start the writer thread; batches can be submitted from then on."""
        self._trim()
        self._writer = threading.Thread(target=self._write_loop, name="journal-writer", daemon=True)
        self._writer.start()

    def _trim(self) -> None:
        """Drop what a smaller capacity no longer keeps, and give the space back when most is free.

        SQLite reuses freed pages but never shrinks the file by itself; after the capacity went down
        between two runs the file would stay at its old size.
        """
        db = self._db
        row = db.execute("SELECT value FROM counters WHERE name = 'total_ingested'").fetchone()
        if row is not None:
            db.execute("DELETE FROM batches WHERE end_seq <= ?", (row[0] - self.capacity,))
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        if pages > 256 and free * 2 > pages:
            log.info("compacting the data directory: %d of its %d pages are free", free, pages)
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # in WAL mode the file shrinks at the checkpoint

    def submit(self, batch: LoggedBatch) -> Future[None]:
        """Queue a batch; the future is done once the batch is on disk, or fails with JournalError."""
        future: Future[None] = Future()
        with self._wakeup:
            if self._failure is not None:
                raise self._failure
            if self._closing or self._writer is None:
                raise JournalError("the data directory is not open for writing")
            self._queue.append((batch, future))
            self._wakeup.notify()
        return future

    def close(self) -> None:
        """Commit what is queued, stop the writer and close the file (SQLite checkpoints it)."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        if self._writer is not None:
            self._writer.join()
        self._db.close()

    @property
    def failure(self) -> JournalError | None:
        return self._failure

    def size_bytes(self) -> int:
        """Bytes the data directory takes now (the database and its write-ahead log)."""
        total = 0
        with os.scandir(self.data_dir) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
        return total

    def _write_loop(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue and not self._closing:
                    self._wakeup.wait()
                if not self._queue:
                    return
                group, self._queue = self._queue, []
            try:
                self._commit([batch for batch, _ in group])
            except Exception as error:
                self._fail(group, error)
                return
            for _, future in group:
                future.set_result(None)

    def _commit(self, batches: Sequence[LoggedBatch]) -> None:
        db = self._db
        total = max(batch.start_seq + len(batch.columns) for batch in batches)
        evicted_below = total - self.capacity
        small_run = self._small_run
        db.execute("BEGIN")
        try:
            for batch in batches:
                for code, name in batch.assigned_categories:
                    # A reused code names something else now, and a name that came back may have
                    # had another code before: no held reading carries either of the old entries.
                    db.execute("DELETE FROM categories WHERE code = ? OR name = ?", (code, name))
                    db.execute("INSERT INTO categories (code, name) VALUES (?, ?)", (code, name))
                end_seq = batch.start_seq + len(batch.columns)
                if end_seq > evicted_below and len(batch.columns):
                    columns = batch.columns
                    db.execute(
                        "INSERT INTO batches (end_seq, start_seq, timestamps_ns, vals, codes) VALUES (?, ?, ?, ?, ?)",
                        (
                            end_seq,
                            batch.start_seq,
                            _blob(columns.timestamps_ns, TIMESTAMP_DTYPE),
                            _blob(columns.values, VALUE_DTYPE),
                            _blob(columns.codes, CODE_DTYPE),
                        ),
                    )
                    small_run = _extend_run(small_run, batch.start_seq, end_seq)
                if batch.batch_id:
                    db.execute(
                        "INSERT INTO batch_ids (batch_id, accepted) VALUES (?, ?)",
                        (batch.batch_id, len(batch.columns)),
                    )
            if small_run[2] >= COMPACT_RUN:
                _merge_rows(db, small_run[0], small_run[1])
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
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._sync()
        self._small_run = small_run

    def _sync(self) -> None:
        """COMMIT: with synchronous=FULL in WAL mode it returns only after the log is fsync'd.

        Nothing is acknowledged before this returns (tests hold it here to show that).
        """
        self._db.execute("COMMIT")

    def _fail(self, group: list[tuple[LoggedBatch, Future[None]]], error: Exception) -> None:
        # Like a database that cannot fsync, stop rather than guess what reached the disk: the
        # batches are not acknowledged, and a restart recovers what was committed.
        log.error("data directory commit failed; no further batches are acknowledged: %s", error)
        with self._wakeup:
            self._failure = JournalError(f"the data directory cannot be written: {error}")
            group = group + self._queue
            self._queue = []
        for _, future in group:
            future.set_exception(self._failure)


def _make_private(data_dir: Path) -> None:
    """Create the directory 0700 and the log in it 0600; SQLite gives its -wal and -shm files the
    log's mode. A directory that exists keeps its mode (it may be a mount point, or a path chosen
    for reasons of its own), with a warning when others may enter it: the directory's mode is what
    keeps them from every file inside."""
    try:
        data_dir.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        status = data_dir.stat()
        mode = stat.S_IMODE(status.st_mode)
        if stat.S_ISDIR(status.st_mode) and mode & 0o077:  # not a directory: opening the log says so
            log.warning(
                "data directory %s has mode %04o: others than its owner may read the readings; "
                "chmod %04o makes it private",
                data_dir,
                mode,
                DIR_MODE,
            )
    with contextlib.suppress(FileExistsError):  # a log that exists is opened as it is
        os.close(os.open(data_dir / FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are the explicit BEGIN/COMMIT of the writer.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # Exclusive: a second ingestor on the same directory fails at start instead of interleaving
        # its sequence numbers; the lock dies with the process, so a crash never leaves it stale.
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT_VERSION:
            raise JournalError(f"{path} was written in format {version}; this ingestor reads up to {FORMAT_VERSION}")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise JournalError(f"{path} cannot use write-ahead logging (journal_mode is {mode})")
        db.execute("PRAGMA synchronous = FULL")
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
    except sqlite3.OperationalError as error:
        db.close()
        if "locked" in str(error):
            raise JournalError(f"{path} is in use by another ingestor") from error
        raise
    except BaseException:
        db.close()
        raise
    return db


def _extend_run(run: tuple[int, int, int], start_seq: int, end_seq: int) -> tuple[int, int, int]:
    """The run of small rows after the row [start_seq, end_seq) was added."""
    if end_seq - start_seq >= COMPACT_BELOW:
        return (0, 0, 0)
    run_start, run_end, rows = run
    if rows and run_end == start_seq:
        return (run_start, end_seq, rows + 1)
    return (start_seq, end_seq, 1)


def _merge_rows(db: sqlite3.Connection, start_seq: int, end_seq: int) -> None:
    """Replace the rows holding readings [start_seq, end_seq) by one row: same readings, fewer rows."""
    where = "WHERE end_seq > ? AND end_seq <= ?"
    rows = db.execute(
        f"SELECT start_seq, timestamps_ns, vals, codes FROM batches {where} ORDER BY end_seq", (start_seq, end_seq)
    ).fetchall()
    if len(rows) < 2:
        return
    db.execute(f"DELETE FROM batches {where}", (start_seq, end_seq))
    db.execute(
        "INSERT INTO batches (end_seq, start_seq, timestamps_ns, vals, codes) VALUES (?, ?, ?, ?, ?)",
        (end_seq, rows[0][0], *(b"".join(row[column] for row in rows) for column in (1, 2, 3))),
    )


def _blob(array: np.ndarray, dtype: np.dtype) -> memoryview:
    """The array's bytes in the stored dtype, without a copy when it already has that layout."""
    return memoryview(np.ascontiguousarray(array, dtype=dtype)).cast("B")
