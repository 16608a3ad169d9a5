"""The journal's SQLite file: created private, opened alone, its schema, and what it holds read back.

Each batch is one row holding its columns as the raw little-endian buffers of the wire format
(int64 timestamps, float64 values, uint16 category codes), so a batch of 10,000 readings is one
insert of 180 kB, not 10,000 inserts. The category dictionary is a table of its own.

SQLite runs in WAL mode with ``synchronous=FULL``: COMMIT returns only after the write-ahead log is
fsync'd, and the log's frame checksums make SQLite ignore a torn last transaction when it opens the
file again (a power cut mid-append loses that transaction, never the ones before, never garbage).
Knows nothing of gRPC; ``ingestor/journal.py`` writes to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingestor.categories import FREE
from ingestor.dir_lock import DirectoryLock, lock_directory
from ingestor.errors import JournalError
from ingestor.partials import PartialTable, empty_partials
from ingestor.store import CODE_DTYPE, TIMESTAMP_DTYPE, VALUE_DTYPE, Columns

log = logging.getLogger(__name__)

FILE_NAME = "readings.sqlite3"
FORMAT_VERSION = 2
"""PRAGMA user_version of the file; a file written by a newer format is refused, not misread.
1: no fingerprints; 2: ``batch_ids.fingerprint`` (a format-1 file gains the column when opened,
its ids keep NULL there: they are recognised as before, without comparing the readings)."""
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
    codes BLOB NOT NULL,
    arrived_ns INTEGER  -- wall-clock ns of the commit that wrote the readings (NULL in older files)
);
CREATE TABLE IF NOT EXISTS categories (code INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS batch_ids (
    position INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    accepted INTEGER NOT NULL,
    fingerprint BLOB  -- of the readings (ingestor/fingerprints.py), NULL for ids written in format 1
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_ROLLUPS = """
CREATE TABLE IF NOT EXISTS rollups (
    category TEXT NOT NULL,
    minute INTEGER NOT NULL,  -- of event time, since the Unix epoch
    count INTEGER NOT NULL,
    total REAL NOT NULL,
    minimum REAL NOT NULL,
    maximum REAL NOT NULL,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    mean REAL NOT NULL,
    m2 REAL NOT NULL,
    PRIMARY KEY (category, minute)
) WITHOUT ROWID
"""
"""The rollups (``ingestor/rollups.py``) of every reading logged, written in the transactions that
log the readings. Added to format 2 files as they are opened: an ingestor that does not know the
table leaves it alone."""


@dataclass(frozen=True, slots=True)
class Recovered:
    """What the log holds: the counters, the dictionary, the newest readings and the batch ids."""

    total_ingested: int
    categories: list[str]
    """Names by code; ``ingestor.categories.FREE`` where a code named nothing."""
    columns: Columns
    batch_ids: list[tuple[str, int]]
    """(batch id, readings accepted), oldest first."""
    fingerprints: dict[str, bytes] = field(default_factory=dict)
    """The fingerprint of each of those ids that has one (ids of format 1 have none)."""
    arrivals: list[tuple[int, int]] = field(default_factory=list)
    """(end sequence, wall-clock ns) of the rows of ``columns`` that say when they arrived."""
    rollup_categories: list[str] = field(default_factory=list)
    rollups: PartialTable = field(default_factory=empty_partials)
    """Per (category, minute), every reading logged (codes index ``rollup_categories``)."""


def open_database(data_dir: Path) -> tuple[sqlite3.Connection, DirectoryLock]:
    """Open (or create) the log in ``data_dir``, and the lock that keeps every other ingestor out:
    a second one is refused at once (``ingestor/dir_lock.py``)."""
    try:
        _make_private(data_dir)
    except OSError as error:
        raise JournalError(f"cannot use data directory {str(data_dir)!r}: {error}") from error
    lock = lock_directory(data_dir)
    try:
        return _connect(data_dir / FILE_NAME), lock
    except (OSError, sqlite3.Error) as error:
        lock.release()
        raise JournalError(f"cannot use data directory {str(data_dir)!r}: {error}") from error
    except BaseException:
        lock.release()
        raise


def records_arrivals(db: sqlite3.Connection) -> bool:
    """Whether the log's rows say when they arrived (files written before that do not, until upgraded)."""
    return "arrived_ns" in [row[1] for row in db.execute("PRAGMA table_info(batches)")]


def add_arrivals(db: sqlite3.Connection) -> None:
    """Give a file of rows without arrival times the column; on a full disk it stays without."""
    if records_arrivals(db):
        return
    try:
        db.execute("ALTER TABLE batches ADD COLUMN arrived_ns INTEGER")
    except sqlite3.OperationalError as error:
        log.warning("the log cannot record arrival times (%s): retention by age keeps its rows", error)


def read_back(db: sqlite3.Connection, capacity: int, arrived_after_ns: int | None = None) -> Recovered:
    """The newest ``capacity`` readings the log holds, with its counters, dictionary and batch ids;
    with ``arrived_after_ns``, only the rows that arrived after it (rows that do not say when they
    arrived are kept)."""
    row = db.execute("SELECT value FROM counters WHERE name = 'total_ingested'").fetchone()
    total: int = row[0] if row else 0
    named = dict(db.execute("SELECT code, name FROM categories").fetchall())
    # Codes freed by the earlier run are holes; the store refuses a held reading that carries one.
    categories = [named.get(code, FREE) for code in range(max(named, default=-1) + 1)]
    arrived = "arrived_ns" if records_arrivals(db) else "NULL"
    rows = db.execute(
        f"SELECT start_seq, end_seq, timestamps_ns, vals, codes, {arrived} FROM batches WHERE end_seq > ? "
        "ORDER BY end_seq",
        (total - capacity,),
    ).fetchall()
    if arrived_after_ns is not None:
        # Rows arrive in sequence order: the expired ones are a prefix.
        expired = [i for i, row in enumerate(rows) if row[5] is not None and row[5] <= arrived_after_ns]
        rows = rows[expired[-1] + 1 :] if expired else rows
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
    for start_seq, end_seq, timestamps, values, codes, _ in rows:
        count = end_seq - start_seq
        sizes = (len(timestamps), len(values), len(codes))
        if sizes != (count * TIMESTAMP_DTYPE.itemsize, count * VALUE_DTYPE.itemsize, count * CODE_DTYPE.itemsize):
            raise JournalError(f"batch [{start_seq}, {end_seq}) in the data directory has columns of {sizes} bytes")
    columns = Columns(
        np.frombuffer(b"".join(row[2] for row in rows), dtype=TIMESTAMP_DTYPE),
        np.frombuffer(b"".join(row[3] for row in rows), dtype=VALUE_DTYPE),
        np.frombuffer(b"".join(row[4] for row in rows), dtype=CODE_DTYPE),
    )
    id_rows = db.execute("SELECT batch_id, accepted, fingerprint FROM batch_ids ORDER BY position").fetchall()
    batch_ids = [(batch_id, accepted) for batch_id, accepted, _ in id_rows]
    fingerprints = {batch_id: bytes(digest) for batch_id, _, digest in id_rows if digest is not None}
    rollup_categories, rollups = read_rollups(db)
    arrivals = [(row[1], row[5]) for row in rows if row[5] is not None]
    return Recovered(total, categories, columns, batch_ids, fingerprints, arrivals, rollup_categories, rollups)


def read_rollups(db: sqlite3.Connection) -> tuple[list[str], PartialTable]:
    rows = db.execute(
        "SELECT category, minute, count, total, minimum, maximum, first_ns, last_ns, mean, m2 FROM rollups"
    ).fetchall()
    if not rows:
        return [], empty_partials()
    names = sorted({row[0] for row in rows})
    code = {name: index for index, name in enumerate(names)}
    ints = np.array([(code[row[0]], row[1], row[2], row[6], row[7]) for row in rows], dtype=np.int64)
    floats = np.array([(row[3], row[4], row[5], row[8], row[9]) for row in rows], dtype=np.float64)
    table = PartialTable(
        codes=ints[:, 0].copy(),
        keys=ints[:, 1].copy(),
        count=ints[:, 2].copy(),
        total=floats[:, 0].copy(),
        minimum=floats[:, 1].copy(),
        maximum=floats[:, 2].copy(),
        first_ns=ints[:, 3].copy(),
        last_ns=ints[:, 4].copy(),
        mean=floats[:, 3].copy(),
        m2=floats[:, 4].copy(),
    )
    return names, table


def write_rollups(db: sqlite3.Connection, rows: PartialTable, names: list[str], first_kept_minute: int | None) -> None:
    """Replace the rows of the same (category, minute) by ``rows``, and drop minutes before the first kept."""
    db.executemany(
        "INSERT OR REPLACE INTO rollups (category, minute, count, total, minimum, maximum, first_ns, last_ns, mean, m2)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        zip(
            [names[code] for code in rows.codes.tolist()],
            rows.keys.tolist(),
            rows.count.tolist(),
            rows.total.tolist(),
            rows.minimum.tolist(),
            rows.maximum.tolist(),
            rows.first_ns.tolist(),
            rows.last_ns.tolist(),
            rows.mean.tolist(),
            rows.m2.tolist(),
            strict=True,
        ),
    )
    if first_kept_minute is not None:
        db.execute("DELETE FROM rollups WHERE minute < ?", (first_kept_minute,))


def trim(db: sqlite3.Connection, capacity: int) -> None:
    """Drop what a smaller capacity no longer keeps, and give the space back when most is free.

    SQLite reuses freed pages but never shrinks the file by itself; after the capacity went down
    between two runs the file would stay at its old size.
    """
    row = db.execute("SELECT value FROM counters WHERE name = 'total_ingested'").fetchone()
    if row is not None and db.execute("SELECT 1 FROM batches WHERE end_seq <= ?", (row[0] - capacity,)).fetchone():
        db.execute("DELETE FROM batches WHERE end_seq <= ?", (row[0] - capacity,))
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    if pages > 256 and free * 2 > pages:
        log.info("compacting the data directory: %d of its %d pages are free", free, pages)
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # in WAL mode the file shrinks at the checkpoint


def size_bytes(data_dir: Path) -> int:
    """Bytes the data directory takes now (the database and its write-ahead log)."""
    total = 0
    with os.scandir(data_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


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
        if version < FORMAT_VERSION:
            # Written only when it changes: a file on a full disk still opens, and serves what it holds.
            _upgrade(db)
        add_arrivals(db)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollups'").fetchone() is None:
            db.execute(_ROLLUPS)
    except sqlite3.OperationalError as error:
        db.close()
        if "locked" in str(error):
            raise JournalError(f"{path} is in use by another ingestor") from error
        raise
    except BaseException:
        db.close()
        raise
    return db


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a new file (version 0) or one of an older format to FORMAT_VERSION, in one transaction."""
    db.execute("BEGIN")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        columns = [row[1] for row in db.execute("PRAGMA table_info(batch_ids)")]
        if "fingerprint" not in columns:  # format 1
            db.execute("ALTER TABLE batch_ids ADD COLUMN fingerprint BLOB")
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
