"""The crash tests' bookkeeping: producers that remember what they sent and what was acknowledged,
snapshots of what a restarted ingestor holds, and the checks of one against the other.

Every written reading names its batch: batch ``key`` carries the values ``key * SPAN + i`` for
``i = 0 .. size - 1``, timestamps ``T0_NS`` plus the value, and the category of its producer. So a
snapshot tells, reading by reading, which batch it belongs to and where in that batch it was.

What a snapshot must show, given what the producers saw:

- every batch comes back whole and in one piece, exactly once; only the oldest one held may have lost
  its first readings, to eviction;
- a batch is missing only if it was evicted: readings are evicted oldest first, so a missing batch
  was sent before every batch still held was acknowledged (whatever is acknowledged before another
  batch is sent is stored before it);
- batches are held in an order that respects the same rule;
- what an earlier snapshot held is still there, unchanged, unless evicted since;
- ``total_ingested`` is the sum of the stored batches' sizes (plus generated readings) and
  ``evicted`` the readings of stored batches no longer held, both counted here independently.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from functions.wire import decode_export
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

SPAN = 10_000
"""Readings a batch may have, at most: batch k's values are k * SPAN + 0, 1, 2, ..."""
T0_NS = 1_705_744_800 * 1_000_000_000
PRODUCER_CATEGORY = "producer-"
"""Written readings carry ``producer-<n>``; the generator's categories are the ingestor's defaults."""


@dataclass
class Batch:
    key: int
    producer: int
    size: int
    batch_id: str
    sent_at: float
    acked_at: float = math.inf
    stored: bool | None = None
    """True once known to be stored (acknowledged, seen, or a retry was recognised); None while it
    was in flight when the ingestor died and nothing has told yet."""

    @property
    def category(self) -> str:
        return f"{PRODUCER_CATEGORY}{self.producer}"

    def request(self) -> pb.WriteReadingsRequest:
        values = self.key * SPAN + np.arange(self.size, dtype="<f8")
        return pb.WriteReadingsRequest(
            columns=pb.ReadingColumns(
                timestamps_ns=(T0_NS + values.astype("<i8")).tobytes(),
                values=values.tobytes(),
                category_codes=np.zeros(self.size, dtype="<u2").tobytes(),
            ),
            column_categories=[self.category],
            batch_id=self.batch_id,
        )


@dataclass
class Ledger:
    """Every batch ever sent, by key, and every generated reading ever seen, by timestamp."""

    batches: dict[int, Batch] = field(default_factory=dict)
    generated_seen: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new_batch(self, producer: int, size: int, with_id: bool = True) -> Batch:
        if not 1 <= size <= SPAN:
            raise ValueError(f"a batch has 1 to {SPAN} readings, not {size}")
        with self._lock:
            key = len(self.batches)
            batch = Batch(key, producer, size, f"crash-{key}" if with_id else "", time.monotonic())
            self.batches[key] = batch
        return batch

    def stored_readings(self) -> int:
        return sum(batch.size for batch in self.batches.values() if batch.stored)

    def unresolved_readings(self) -> int:
        return sum(batch.size for batch in self.batches.values() if batch.stored is None)


@dataclass
class Producer:
    """Writes batches one after another until told to stop or the ingestor goes away."""

    number: int
    ledger: Ledger
    rng: random.Random
    max_batch: int = 2_000
    last_acknowledged: Batch | None = None
    in_flight: Batch | None = None

    def write(self, stub: pb_grpc.IngestorServiceStub, batch: Batch) -> None:
        """Send ``batch``; on an acknowledgement, check it and record it. RpcError propagates."""
        self.in_flight = batch
        response = stub.WriteReadings(batch.request(), timeout=30)
        assert (response.accepted, response.duplicate, response.durable) == (batch.size, False, True), (
            f"batch {batch.key} of {batch.size} readings was acknowledged as {response}"
        )
        batch.acked_at = time.monotonic()
        batch.stored = True
        self.in_flight = None
        self.last_acknowledged = batch

    def write_small_batches(self, address: str, count: int) -> None:
        """``count`` one-reading batches without ids, one after another: each is a commit of its own."""
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            for _ in range(count):
                self.write(stub, self.ledger.new_batch(self.number, 1, with_id=False))

    def run(self, address: str, stop: threading.Event, acknowledged: threading.Event) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            while not stop.is_set():
                batch = self.ledger.new_batch(self.number, self.rng.randint(1, self.max_batch))
                try:
                    self.write(stub, batch)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    return  # the ingestor is gone: this batch was in flight
                acknowledged.set()

    def retry_after_restart(self, stub: pb_grpc.IngestorServiceStub, where: str) -> int:
        """Send the last acknowledged batch and the one in flight again, with their ids.

        A batch known to be stored must be recognised (``duplicate``), nothing stored twice; one whose
        fate was unknown is either recognised or stored now. Returns how many batches were stored now.
        """
        stored_now = 0
        for batch in (self.last_acknowledged, self.in_flight):
            if batch is None:
                continue
            assert batch.batch_id, f"batch {batch.key} was in flight without an id: it cannot be retried {where}"
            sent_at = time.monotonic()
            response = stub.WriteReadings(batch.request(), timeout=30)
            assert (response.accepted, response.durable) == (batch.size, True), f"{response} {where}"
            if batch.stored:
                assert response.duplicate, f"the retry of stored batch {batch.key} was not recognised {where}"
            elif not response.duplicate:
                batch.sent_at = sent_at
                stored_now += 1
            batch.acked_at = min(batch.acked_at, time.monotonic())
            batch.stored = True
        self.in_flight = None
        return stored_now


@dataclass(frozen=True)
class Snapshot:
    """What the ingestor holds: its status and every reading, oldest first (sequence ``first_seq`` on)."""

    status: pb.GetStatusResponse
    values: np.ndarray
    timestamps_ns: np.ndarray
    categories: np.ndarray
    """The category name of each reading."""

    @property
    def first_seq(self) -> int:
        return self.status.evicted

    @property
    def total(self) -> int:
        return self.status.total_ingested


def take_snapshot(address: str) -> Snapshot:
    """Status and a full export; call while nothing is written, so the two agree."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        status = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        readings = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=30))
    names = np.array(list(readings.categories), dtype=object)[readings.codes.astype(np.intp)]
    return Snapshot(status, readings.values, readings.timestamps_ns, names)


def check_unchanged(previous: Snapshot, current: Snapshot, where: str) -> None:
    """Readings held in ``previous`` and not evicted since are held in ``current``, unchanged."""
    assert current.total >= previous.total, f"total_ingested went back from {previous.total} {where}"
    low, high = max(previous.first_seq, current.first_seq), previous.total
    if low >= high:
        return
    before = slice(low - previous.first_seq, high - previous.first_seq)
    after = slice(low - current.first_seq, high - current.first_seq)
    for column in ("values", "timestamps_ns", "categories"):
        same = np.asarray(getattr(previous, column)[before] == getattr(current, column)[after])
        first = int(np.argmin(same)) + low
        assert same.all(), f"reading {first} changed since an earlier restart ({column}) {where}"


def check_snapshot(
    snapshot: Snapshot,
    ledger: Ledger,
    capacity: int,
    *,
    previous: Snapshot | None = None,
    generated: bool = False,
    where: str = "",
) -> set[int]:
    """Check a snapshot against the ledger (see the module's docstring); return the keys held.

    Batches in flight that are found held are recorded as stored. The counters are checked exactly
    when every batch's fate is known and no generator ran; otherwise within the bounds known.
    """
    status = snapshot.status
    held = len(snapshot.values)
    assert status.buffered == held == min(status.total_ingested, capacity), (
        f"buffered {status.buffered}, exported {held}, total_ingested {status.total_ingested}, capacity {capacity} "
        f"{where}"
    )
    assert status.total_ingested == status.buffered + status.evicted, f"{status} {where}"
    if previous is not None:
        check_unchanged(previous, snapshot, where)

    written = np.array([name.startswith(PRODUCER_CATEGORY) for name in snapshot.categories], dtype=bool)
    positions = np.flatnonzero(written)
    values = snapshot.values[written]
    names = snapshot.categories[written]
    assert np.array_equal(snapshot.timestamps_ns[written], T0_NS + values.astype(np.int64)), (
        f"a written reading's timestamp does not match its value {where}"
    )
    assert len(np.unique(values)) == len(values), f"a written reading came back twice {where}"
    keys = values.astype(np.int64) // SPAN
    indices = values.astype(np.int64) % SPAN

    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).tolist() if len(keys) else []
    ends = [*starts[1:], len(keys)] if starts else []
    run_keys = keys[starts].tolist()
    assert len(set(run_keys)) == len(run_keys), f"a batch came back in separate pieces {where}"
    present: list[Batch] = []
    for start, end, key in zip(starts, ends, run_keys, strict=True):
        batch = ledger.batches.get(key)
        assert batch is not None, f"readings of batch {key}, which was never sent {where}"
        count, first = end - start, int(indices[start])
        in_one_run = positions[end - 1] - positions[start] + 1 == count
        in_order = np.array_equal(indices[start:end], np.arange(first, first + count))
        whole = first == 0 and count == batch.size
        # Only the oldest reading held can be the tail of a batch whose first readings were evicted.
        evicted_head = positions[start] == 0 and status.evicted > 0 and first + count == batch.size
        came_back = f"batch {key} of {batch.size} readings came back as {count} readings from reading {first}"
        assert in_one_run, f"{came_back}, not one after another {where}"
        assert in_order, f"{came_back}, out of order {where}"
        assert whole or evicted_head, f"{came_back} {where}"
        assert (names[start:end] == batch.category).all(), f"batch {key} came back in another category {where}"
        if batch.stored is None:
            batch.stored = True
        present.append(batch)

    # Whatever was acknowledged before another batch was sent is stored before it.
    latest_sent, latest_key = -math.inf, -1
    for batch in present:
        assert batch.acked_at >= latest_sent, (
            f"batch {batch.key} was acknowledged before batch {latest_key} was sent, yet is held after it {where}"
        )
        if batch.sent_at > latest_sent:
            latest_sent, latest_key = batch.sent_at, batch.key
    held_keys = {batch.key for batch in present}
    oldest_ack_held = min((batch.acked_at for batch in present), default=math.inf)
    for batch in ledger.batches.values():
        if batch.stored and batch.key not in held_keys:
            evictable = status.evicted > 0 and batch.sent_at <= oldest_ack_held
            kind = "acknowledged" if batch.acked_at < math.inf else "stored"
            assert evictable, f"{kind} batch {batch.key} of {batch.size} readings is missing {where}"

    generated_timestamps = snapshot.timestamps_ns[~written]
    assert np.all(np.diff(generated_timestamps) > 0), f"generated readings out of order or twice {where}"
    ledger.generated_seen.update(generated_timestamps.tolist())

    stored = ledger.stored_readings()
    unresolved = ledger.unresolved_readings()
    generated_gone = len(ledger.generated_seen) - len(generated_timestamps)
    evicted_counted = stored - len(values) + generated_gone
    if unresolved == 0 and not generated:
        assert status.total_ingested == stored, (
            f"total_ingested {status.total_ingested}, but the stored batches hold {stored} readings {where}"
        )
        assert status.evicted == evicted_counted, (
            f"evicted {status.evicted}, but {evicted_counted} readings of stored batches are not held {where}"
        )
    else:
        low = stored + len(ledger.generated_seen)
        high = math.inf if generated else stored + unresolved
        assert low <= status.total_ingested <= high, (
            f"total_ingested {status.total_ingested} is not within [{low}, {high}] {where}"
        )
        assert status.evicted >= evicted_counted, (
            f"evicted {status.evicted}, but {evicted_counted} readings seen before are not held {where}"
        )
    return held_keys
