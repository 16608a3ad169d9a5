"""The durable log: round trip, counters, retention, batch ids, torn writes, sync before acknowledgement."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ingestor.errors import JournalError
from ingestor.intake import Intake
from ingestor.journal import COMPACT_RUN, Journal
from ingestor.journal_file import FILE_NAME
from ingestor.store import Columns, ReadingStore


class Durable:
    """A store fed through an Intake whose journal lives in ``data_dir``, as the server builds it."""

    def __init__(self, data_dir: Path, capacity: int = 1000, batch_id_window: int = 100) -> None:
        self.journal = Journal(data_dir, capacity, batch_id_window)
        self.recovered = self.journal.load()
        self.store = ReadingStore(capacity)
        self.store.restore(self.recovered.categories, self.recovered.columns, self.recovered.total_ingested)
        self.journal.start()
        self.intake = Intake(self.store, self.journal, batch_id_window, self.recovered.batch_ids)

    def write(self, first_value: int, count: int, category: str = "A", batch_id: str = "") -> None:
        """Append ``count`` readings valued first_value, first_value + 1, ... and wait for the commit."""
        values = np.arange(first_value, first_value + count, dtype=np.float64)
        columns = Columns(values.astype(np.int64) * 1000, values, self.store.encode_categories([category] * count))
        committed = self.intake.append(columns, batch_id)
        assert committed is not None
        committed.result(timeout=30)

    def everything(self) -> Columns:
        return self.store.read(0, self.store.total_ingested)


def three(durable: Durable, category: str) -> Columns:
    values = np.arange(3, dtype=np.float64)
    return Columns(values.astype(np.int64), values, durable.store.encode_categories([category] * 3))


@pytest.fixture
def opened() -> Iterator[list[Durable]]:
    """Journals opened by a test, closed at its end whatever happens."""
    journals: list[Durable] = []
    yield journals
    for durable in journals:
        durable.journal.close()


def open_durable(opened: list[Durable], data_dir: Path, **options: int) -> Durable:
    durable = Durable(data_dir, **options)
    opened.append(durable)
    return durable


def reopen(opened: list[Durable], durable: Durable, **options: int) -> Durable:
    durable.journal.close()
    opened.remove(durable)
    return open_durable(opened, durable.journal.data_dir, **options)


def test_a_new_directory_recovers_an_empty_store(tmp_path: Path, opened: list[Durable]) -> None:
    durable = open_durable(opened, tmp_path / "new" / "dir")
    assert (durable.store.total_ingested, durable.store.buffered, len(durable.store.categories)) == (0, 0, 0)
    assert (tmp_path / "new" / "dir" / FILE_NAME).exists()


def test_readings_dictionary_and_counters_survive_a_reopen(tmp_path: Path, opened: list[Durable]) -> None:
    durable = open_durable(opened, tmp_path, capacity=1000)
    durable.write(0, 10, "A")
    durable.write(10, 5, "B")
    durable.write(15, 20, "A")
    before = durable.everything()

    again = reopen(opened, durable)
    after = again.everything()
    assert list(again.store.categories) == ["A", "B"]
    assert (again.store.total_ingested, again.store.buffered, again.store.evicted) == (35, 35, 0)
    assert after.values.tolist() == list(range(35))
    assert after.timestamps_ns.tolist() == before.timestamps_ns.tolist()
    assert after.codes.tolist() == [0] * 10 + [1] * 5 + [0] * 20


def test_counters_survive_eviction_and_a_reopen(tmp_path: Path, opened: list[Durable]) -> None:
    durable = open_durable(opened, tmp_path, capacity=25)
    for first in range(0, 100, 10):
        durable.write(first, 10)
    again = reopen(opened, durable, capacity=25)
    store = again.store
    assert (store.total_ingested, store.buffered, store.evicted) == (100, 25, 75)
    assert store.total_ingested == store.buffered + store.evicted
    assert again.everything().values.tolist() == list(range(75, 100))
    # Appending after recovery continues the numbering.
    again.write(100, 3)
    assert (store.total_ingested, store.buffered, store.evicted) == (103, 25, 78)
    assert again.everything().values.tolist() == list(range(78, 103))


def test_a_larger_capacity_after_restart_counts_what_was_not_kept_as_evicted(
    tmp_path: Path, opened: list[Durable]
) -> None:
    durable = open_durable(opened, tmp_path, capacity=20)
    for first in range(0, 100, 10):
        durable.write(first, 10)
    again = reopen(opened, durable, capacity=50)
    store = again.store
    assert (store.total_ingested, store.buffered, store.evicted) == (100, 20, 80)
    again.write(100, 40)
    assert (store.total_ingested, store.buffered, store.evicted) == (140, 50, 90)
    assert again.everything().values.tolist() == list(range(90, 140))


def test_retention_keeps_the_disk_use_bounded_by_the_capacity(tmp_path: Path, opened: list[Durable]) -> None:
    capacity = 20_000
    durable = open_durable(opened, tmp_path, capacity=capacity)
    sizes = []
    for round_ in range(6):
        for first in range(0, 4 * capacity, 10_000):
            durable.write(round_ * 4 * capacity + first, 10_000)
        rows = durable.journal._db.execute("SELECT COUNT(*), MIN(start_seq) FROM batches").fetchone()
        # The rows held cover the capacity: two batches of 10,000, and nothing older.
        assert rows == (2, durable.store.total_ingested - capacity)
        database = (tmp_path / FILE_NAME).stat().st_size
        everything = durable.journal.size_bytes()
        # The database: the capacity (18 bytes a reading) plus the batches of one commit, as freed
        # pages are reused; the write-ahead log: up to SQLite's checkpoint interval (1000 pages).
        assert database < 2 * capacity * 18 + 256 * 1024
        assert everything - database < 1000 * 4096 + 2 * 10_000 * 18 + 64 * 1024
        sizes.append(everything)
    # 24 x the capacity went through, yet the directory stopped growing after the second round.
    assert max(sizes[1:]) == sizes[1]


def test_runs_of_tiny_batches_are_merged_so_recovery_reads_few_rows(tmp_path: Path, opened: list[Durable]) -> None:
    capacity = 3 * COMPACT_RUN
    durable = open_durable(opened, tmp_path, capacity=capacity)
    durable.write(0, 5000)  # a large row is never merged
    count = 4 * COMPACT_RUN + 10  # one reading a batch, as the generator makes them at 1 Hz
    for i in range(count):
        durable.write(5000 + i, 1, category="AB"[i % 2])
    rows = durable.journal._db.execute("SELECT end_seq - start_seq FROM batches ORDER BY end_seq").fetchall()
    # The large row and the oldest merged rows were evicted: what is left is one merged row
    # straddling the eviction boundary, the merged rows after it, and the 10 newest tiny rows.
    assert [size for (size,) in rows] == [COMPACT_RUN] * 3 + [1] * 10
    expected = durable.everything()

    again = reopen(opened, durable, capacity=capacity)
    recovered = again.everything()
    assert (
        recovered.values.tolist()
        == expected.values.tolist()
        == [float(5000 + i) for i in range(count - capacity, count)]
    )
    assert recovered.codes.tolist() == expected.codes.tolist()
    assert (again.store.total_ingested, again.store.evicted) == (5000 + count, 5000 + count - capacity)


def test_a_smaller_capacity_after_restart_gives_the_disk_space_back(tmp_path: Path, opened: list[Durable]) -> None:
    durable = open_durable(opened, tmp_path, capacity=200_000)
    for first in range(0, 200_000, 10_000):
        durable.write(first, 10_000)
    durable.journal.close()
    opened.remove(durable)
    large = (tmp_path / FILE_NAME).stat().st_size
    assert large > 200_000 * 18

    small = open_durable(opened, tmp_path, capacity=10_000)
    assert (tmp_path / FILE_NAME).stat().st_size < large / 4
    assert small.everything().values.tolist() == [float(v) for v in range(190_000, 200_000)]
    assert (small.store.total_ingested, small.store.evicted) == (200_000, 190_000)


def test_batch_ids_are_remembered_for_a_bounded_window(tmp_path: Path, opened: list[Durable]) -> None:
    durable = open_durable(opened, tmp_path, batch_id_window=3)
    for i in range(5):
        durable.write(i * 10, i + 1, batch_id=f"batch-{i}")
    again = reopen(opened, durable, batch_id_window=3)
    assert again.recovered.batch_ids == [("batch-2", 3), ("batch-3", 4), ("batch-4", 5)]
    assert again.intake.remembered_batch_ids == 3


def copy_without_checkpoint(source: Path, target: Path) -> Path:
    """The files as a crash leaves them: copied while the journal is open, so the WAL is not folded in."""
    target.mkdir()
    for path in source.iterdir():
        shutil.copy(path, target / path.name)
    wal = target / f"{FILE_NAME}-wal"
    assert wal.stat().st_size > 0
    return wal


@pytest.mark.parametrize("damage", ["truncate", "scribble"])
def test_a_torn_last_write_is_skipped_on_recovery(tmp_path: Path, opened: list[Durable], damage: str) -> None:
    durable = open_durable(opened, tmp_path / "live")
    for i in range(5):
        durable.write(i * 100, 100, category=f"C{i}")

    intact = copy_without_checkpoint(tmp_path / "live", tmp_path / "intact")
    assert open_durable(opened, intact.parent).everything().values.tolist() == [float(v) for v in range(500)]

    wal = copy_without_checkpoint(tmp_path / "live", tmp_path / "torn")
    size = wal.stat().st_size
    with wal.open("r+b") as file:
        if damage == "truncate":
            file.truncate(size - 1000)  # a power cut in the middle of the last frame
        else:
            file.seek(size - 1000)
            file.write(b"\xff" * 1000)  # the last sectors never made it: garbage in their place

    recovered = open_durable(opened, wal.parent)
    store = recovered.store
    # The last transaction is gone as a whole, counters and dictionary included; the rest is intact.
    assert (store.total_ingested, store.buffered, store.evicted) == (400, 400, 0)
    assert recovered.everything().values.tolist() == [float(v) for v in range(400)]
    assert list(store.categories) == ["C0", "C1", "C2", "C3"]
    # And the recovered log takes new batches where it stopped.
    recovered.write(400, 10, "C4")
    assert store.read(400, 410).codes.tolist() == [4] * 10


def test_the_log_is_fsynced_at_every_commit(tmp_path: Path, opened: list[Durable]) -> None:
    db = open_durable(opened, tmp_path).journal._db
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: fsync the WAL before COMMIT returns


def test_a_batch_is_done_only_after_the_sync_returns(
    tmp_path: Path, opened: list[Durable], monkeypatch: pytest.MonkeyPatch
) -> None:
    durable = open_durable(opened, tmp_path)
    events: list[str] = []
    entered, release = threading.Event(), threading.Event()
    real_sync = Journal._sync

    def held_sync(journal: Journal) -> None:
        events.append("sync called")
        entered.set()
        assert release.wait(10)
        real_sync(journal)
        events.append("sync returned")

    monkeypatch.setattr(Journal, "_sync", held_sync)
    committed = durable.intake.append(three(durable, "A"))
    assert committed is not None
    committed.add_done_callback(lambda _: events.append("done"))
    assert entered.wait(10)
    # Batches queued while a commit is in flight wait for the next one, all together.
    later = [durable.intake.append(three(durable, "B")), durable.intake.append(three(durable, "C"))]
    assert not committed.done()
    assert events == ["sync called"]
    release.set()
    committed.result(timeout=10)
    for future in later:
        assert future is not None
        future.result(timeout=10)
    assert events == ["sync called", "sync returned", "done", "sync called", "sync returned"]


def test_a_failed_commit_acknowledges_nothing_more(
    tmp_path: Path, opened: list[Durable], monkeypatch: pytest.MonkeyPatch
) -> None:
    durable = open_durable(opened, tmp_path)
    durable.write(0, 5)

    def failing_sync(journal: Journal) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Journal, "_sync", failing_sync)
    committed = durable.intake.append(three(durable, "A"))
    assert committed is not None
    with pytest.raises(JournalError, match="disk I/O error"):
        committed.result(timeout=10)
    with pytest.raises(JournalError, match="cannot be written"):
        durable.intake.append(three(durable, "A"))
    monkeypatch.undo()
    assert reopen(opened, durable).everything().values.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.slow  # waits out SQLite's busy timeout
def test_a_second_ingestor_cannot_open_the_same_directory(tmp_path: Path, opened: list[Durable]) -> None:
    open_durable(opened, tmp_path)
    with pytest.raises(JournalError, match="in use by another ingestor"):
        Journal(tmp_path, 1000, 100)


def test_a_newer_file_format_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalError, match="format 99"):
        Journal(tmp_path, 1000, 100)


def test_a_file_that_is_not_a_log_is_refused(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"not a database, " * 512)
    with pytest.raises(JournalError, match="cannot use data directory"):
        Journal(tmp_path, 1000, 100)


def test_closing_right_after_an_expiry_still_deletes_the_expired_rows(tmp_path: Path) -> None:
    """The writer used to leave as soon as it saw the close, before the expiry it had been told of."""
    for attempt in range(20):  # the close lands at a different point of the writer's loop each time
        durable = Durable(tmp_path / str(attempt))
        durable.write(0, 10)
        durable.journal.expire_below(10)
        durable.journal.close()
        with sqlite3.connect(tmp_path / str(attempt) / FILE_NAME) as db:
            assert db.execute("SELECT COUNT(*) FROM batches").fetchone() == (0,), attempt
