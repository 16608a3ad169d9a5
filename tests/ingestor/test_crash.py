"""kill -9 the durable ingestor while several producers write: every acknowledged batch comes back, exactly once.

Three ways to kill, each test in one data directory that lives through all its kills:

- at fixed points of a commit: strace injects SIGKILL into the n-th ``fdatasync`` or ``pwrite64`` of
  the journal's files (tests/support/kill_points.py), before a commit is synced or while it is half written:
  the producers' first commit, a commit of all six producers' batches, a later group commit, a
  checkpoint, the commit that merges a run of rows;
- at random moments drawn from a fixed list of seeds, with the generator running too;
- with the eviction boundary at either end of a batch's row, or one reading before its end.

The capacity is small, so that commits delete evicted rows under the kills, and batches are small,
so that runs of rows are merged (compaction) under them. After each restart the ingestor's readings
and counters are checked against what the producers saw (tests/support/crashing.py), then every producer
sends its last acknowledged batch and the one in flight again, with the same ids, and it is checked
again. A producer's failure fails the test.
"""

from __future__ import annotations

import math
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import pytest

from devtools.processes import ServerProcess
from ingestor.journal import COMPACT_RUN
from ingestor.journal_file import FILE_NAME
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.crashing import SPAN, Batch, Ledger, Producer, Snapshot, check_snapshot, take_snapshot
from tests.support.factories import MakeProcess
from tests.support.kill_points import DATABASE, WAL, KillPoint, attach, journal_writer, wait_until_stalled

CAPACITY = 50_000
PRODUCERS = 6
RATE_HZ = 20_000
"""Of the generator, in the runs killed at random."""

KILL_POINTS = (
    KillPoint("the producers' first commit, before its sync", "fdatasync", WAL, 1),
    KillPoint("the producers' first commit, half written", "pwrite64", WAL, 2),
    KillPoint("a commit of six producers' batches, before its sync", "fdatasync", WAL, 2, stall_first_commit=True),
    KillPoint("a commit of six producers' batches, half written", "pwrite64", WAL, 24, stall_first_commit=True),
    KillPoint("a later group commit, before its sync", "fdatasync", WAL, 16),
    KillPoint("a checkpoint, before the database file is synced", "fdatasync", DATABASE, 1),
    KillPoint("a checkpoint, half copied into the database file", "pwrite64", DATABASE, 2),
    KillPoint("the commit that merges a run of rows, before its sync", "fdatasync", WAL, 1, after_compaction_run=True),
    KillPoint("the commit that merges a run of rows, half written", "pwrite64", WAL, 3, after_compaction_run=True),
)
SEEDS = (3, 14, 15, 92, 65, 35)

Kill = Callable[[threading.Event], None]
"""Ends the ingestor while producers write; gets the event set at the first acknowledgement."""


Start = Callable[..., ServerProcess]
"""``start(data_dir, **settings)``: the durable ingestor of these tests, on ``data_dir``."""


@pytest.fixture
def start(make_ingestor_process: MakeProcess) -> Start:
    def start(data_dir: Path, **settings: object) -> ServerProcess:
        return make_ingestor_process(capacity=CAPACITY, data_dir=data_dir, **settings)

    return start


@pytest.fixture
def attach_strace() -> Iterator[Callable[[int, Path, KillPoint], subprocess.Popen[str]]]:
    """``attach`` (tests/support/kill_points.py); a tracer whose kill point was never reached ends at teardown."""
    tracers: list[subprocess.Popen[str]] = []

    def attach_one(thread: int, data_dir: Path, point: KillPoint) -> subprocess.Popen[str]:
        tracers.append(tracer := attach(thread, data_dir, point))
        return tracer

    yield attach_one
    for tracer in tracers:
        if tracer.poll() is None:
            tracer.kill()
        tracer.communicate()  # waits, and closes its stderr pipe


def recover(
    process: ServerProcess,
    ledger: Ledger,
    producers: list[Producer],
    previous: Snapshot | None,
    *,
    generated: bool,
    where: str,
) -> tuple[Snapshot, set[int], int]:
    """Check what a restarted ingestor holds, retry each producer's last batches, check again.

    Returns the last snapshot, the batches held before the retries, and how many batches the
    retries stored (they had not been stored before).
    """
    recovered = take_snapshot(process.address)
    assert recovered.status.recovered == recovered.status.buffered, f"{recovered.status} {where}"
    held = check_snapshot(recovered, ledger, CAPACITY, previous=previous, generated=generated, where=where)
    with grpc.insecure_channel(process.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        stored_now = sum(producer.retry_after_restart(stub, where) for producer in producers)
    retried = take_snapshot(process.address)
    where = f"{where}, after the retries"
    check_snapshot(retried, ledger, CAPACITY, previous=recovered, generated=generated, where=where)
    return retried, held, stored_now


def produce_until_killed(
    process: ServerProcess,
    producers: list[Producer],
    kill: Kill,
    opening: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> None:
    """Run the producers concurrently until ``kill`` has ended the ingestor; re-raise their failures.

    ``opening``: a write to send first, alongside the producers, and what to wait for before they start.
    """
    stop, acknowledged = threading.Event(), threading.Event()
    with ThreadPoolExecutor(len(producers) + 1) as pool:
        futures = []
        try:
            if opening is not None:
                first_write, ready = opening
                futures.append(pool.submit(first_write))
                ready()
            futures += [pool.submit(producer.run, process.address, stop, acknowledged) for producer in producers]
            kill(acknowledged)
        finally:
            stop.set()
            wait(futures, timeout=60)
            failures = [error for future in futures if future.done() and (error := future.exception())]
            if failures:
                raise ExceptionGroup("producers failed", failures)
    assert process.process.poll() is not None, "the ingestor outlived its kill"


def at(point: KillPoint, process: ServerProcess, tracer: subprocess.Popen[str], timeout: float = 30) -> Kill:
    def kill(acknowledged: threading.Event) -> None:
        try:
            code = process.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{point.name}: the kill point was not reached in {timeout} s") from None
        assert code == -signal.SIGKILL, f"{point.name}: the ingestor ended with {code}\n{''.join(process.output)}"
        tracer.wait(10)

    return kill


def after(delay: float, process: ServerProcess) -> Kill:
    def kill(acknowledged: threading.Event) -> None:
        assert acknowledged.wait(20), f"no batch acknowledged\n{''.join(process.output)}"
        time.sleep(delay)
        process.stop(signal.SIGKILL)

    return kill


def rows_holding(data_dir: Path, copy: Path, values: np.ndarray) -> int:
    """How many rows of the journal hold any of ``values``: read from a copy, as a restart would see it."""
    shutil.copytree(data_dir, copy)
    with closing(sqlite3.connect(copy / FILE_NAME)) as db:
        rows = db.execute("SELECT vals FROM batches").fetchall()
    return sum(bool(np.isin(np.frombuffer(row, dtype="<f8"), values).any()) for (row,) in rows)


def acknowledged(batch: Batch | None) -> bool:
    return batch is not None and batch.acked_at < math.inf


@pytest.mark.slow
def test_kills_at_fixed_points_of_a_commit_lose_no_acknowledged_batch(
    tmp_path: Path, start: Start, attach_strace: Callable[[int, Path, KillPoint], subprocess.Popen[str]]
) -> None:
    data_dir = tmp_path / "data"
    ledger = Ledger()
    producers: list[Producer] = []
    process = start(data_dir)
    previous, _, stored_now = recover(process, ledger, [], None, generated=False, where="after the first start")
    for number, point in enumerate(KILL_POINTS):
        producers = [Producer(n, ledger, random.Random(number * PRODUCERS + n)) for n in range(PRODUCERS)]
        # One more producer writes one-reading batches one at a time: one to find the journal's
        # writer thread; before a merge, the rest of a run of rows one short of a merge (the
        # retries that stored a batch made its first rows); with a stall, the one in the commit
        # held while the six producers' first batches queue up behind it.
        sequential = Producer(PRODUCERS, ledger, random.Random())
        first = len(ledger.batches)
        write_one = partial(sequential.write_small_batches, process.address, 1)
        writer = journal_writer(process.process.pid, write_one)
        if point.after_compaction_run:
            assert previous.status.evicted > 0, "the merging commit would delete no evicted rows"
            sequential.write_small_batches(process.address, COMPACT_RUN - 2 - stored_now)
        run = list(range(first, len(ledger.batches)))
        tracer = attach_strace(writer, data_dir, point)
        opening = None
        if point.stall_first_commit:
            opening = (write_one, partial(wait_until_stalled, writer))
        produce_until_killed(process, producers, at(point, process, tracer), opening)
        where = f"after a kill at {point.name}"
        killed_in_flight = [producer.in_flight for producer in producers]
        if point.after_compaction_run:
            # The kill hit the merging commit: the run was acknowledged, nothing after it was.
            assert all(acknowledged(ledger.batches[key]) for key in run), where
            assert not any(acknowledged(producer.last_acknowledged) for producer in producers), where
            run_values = np.array([key * SPAN for key in run], dtype="<f8")
            rows = rows_holding(data_dir, tmp_path / f"copy-{number}", run_values)
            # Written whole before its sync, the merge is in the log; half written, it is not.
            merged = point.syscall == "fdatasync"
            assert rows == (1 if merged else len(run)), f"the run is in {rows} rows {where}"
        if point.stall_first_commit:
            # The held commit was acknowledged; each producer's first batch was in the next one.
            assert acknowledged(sequential.last_acknowledged), where
            assert not any(acknowledged(producer.last_acknowledged) for producer in producers), where

        process = start(data_dir)
        previous, held, stored_now = recover(process, ledger, producers, previous, generated=False, where=where)
        if point.stall_first_commit:
            # Written whole before its sync, the commit of six batches is in the log; half written, not.
            came_back = [batch is not None and batch.key in held for batch in killed_in_flight]
            assert came_back == [point.syscall == "fdatasync"] * PRODUCERS, f"{came_back} {where}"

    assert process.stop() == 0
    process = start(data_dir)
    after_clean_stop = take_snapshot(process.address)
    check_snapshot(after_clean_stop, ledger, CAPACITY, previous=previous, where="after a clean stop")
    assert after_clean_stop.total == previous.total


@pytest.mark.slow
def test_kills_at_random_moments_with_fixed_seeds_lose_no_acknowledged_batch(tmp_path: Path, start: Start) -> None:
    data_dir = tmp_path / "data"
    ledger = Ledger()
    producers: list[Producer] = []
    previous: Snapshot | None = None
    where = "after the first start"
    process = start(data_dir, rate_hz=RATE_HZ)
    for seed in SEEDS:
        previous, _, _ = recover(process, ledger, producers, previous, generated=True, where=where)
        rng = random.Random(seed)
        producers = [Producer(n, ledger, random.Random(rng.getrandbits(32))) for n in range(PRODUCERS)]
        with grpc.insecure_channel(process.address) as channel:
            pb_grpc.IngestorServiceStub(channel).StartIngestion(pb.StartIngestionRequest(), timeout=10)
        produce_until_killed(process, producers, after(rng.uniform(0.05, 0.6), process))
        where = f"after the kill of seed {seed}"
        process = start(data_dir, rate_hz=RATE_HZ)
    recover(process, ledger, producers, previous, generated=True, where=where)
    assert ledger.generated_seen, "the generator's readings were never seen"
    assert previous.status.evicted > 0, "nothing was evicted: the capacity is too large for this test"


@pytest.mark.slow
@pytest.mark.parametrize("held", [1, 0, 100], ids=["its-last-reading-held", "just-evicted", "whole"])
def test_kills_with_the_eviction_boundary_at_the_edge_of_a_row(tmp_path: Path, held: int, start: Start) -> None:
    """The oldest reading held is the last of its row, or the first after it: the row that straddles
    the boundary is kept whole on disk, and one wholly evicted is dropped."""
    data_dir = tmp_path / "data"
    ledger = Ledger()
    writer = Producer(0, ledger, random.Random(held))
    process = start(data_dir)
    previous, _, _ = recover(process, ledger, [], None, generated=False, where="after the first start")
    with grpc.insecure_channel(process.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for batch_size in (1, 2_000, 100):  # enough readings before the row to evict
            writer.write(stub, ledger.new_batch(0, batch_size))
        row = writer.last_acknowledged
        assert row is not None
        row_end = ledger.stored_readings()  # nothing else writes: the row ends at this sequence number
        # Then as many readings as leave exactly `held` of the row in the buffer.
        remaining = CAPACITY - held
        while remaining:
            size = min(remaining, writer.max_batch)
            writer.write(stub, ledger.new_batch(0, size))
            remaining -= size
    process.stop(signal.SIGKILL)
    process = start(data_dir)
    where = f"after a kill with {held} readings of batch {row.key} held"
    previous, _, _ = recover(process, ledger, [writer], previous, generated=False, where=where)
    assert previous.first_seq == row_end - held
    assert np.count_nonzero(previous.values // SPAN == row.key) == held, where
    # Started again, from what the first restart left on disk: the same readings.
    assert process.stop() == 0
    process = start(data_dir)
    again = take_snapshot(process.address)
    check_snapshot(again, ledger, CAPACITY, previous=previous, where=f"{where}, started twice")
    assert again.total == previous.total
