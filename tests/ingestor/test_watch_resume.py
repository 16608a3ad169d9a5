"""WatchReadings from a sequence number on: each reading's sequence number in the columnar form, a
replay of the held readings before the live ones, each once, and the evicted ones counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from devtools.processes import ThreadedIngestor
from ingestor.named_columns import name_columns, select, split
from ingestor.replay import replay_deliveries
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from ingestor.watch import WatchHub
from tests.support.factories import MakeIngestor


def push(stub: pb_grpc.IngestorServiceStub, values: list[float], categories: list[str]) -> None:
    """Readings whose value is their own number, so a test can tell which arrived."""
    readings = [
        pb.Reading(timestamp={"seconds": 1_700_000_000 + int(v)}, value=v, category=c)
        for v, c in zip(values, categories, strict=True)
    ]
    stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=10)


def decoded(message: pb.WatchReadingsResponse) -> tuple[list[float], list[int], list[str], int]:
    """Values, sequence numbers, categories and missed of a columnar message."""
    columns = message.columns
    values = np.frombuffer(columns.values, "<f8").tolist()
    sequences = np.frombuffer(columns.sequences, "<u8").tolist()
    codes = np.frombuffer(columns.category_codes_u8, "u1").tolist()
    return values, sequences, [message.column_categories[c] for c in codes], message.missed


def collect(
    stream: Iterator[pb.WatchReadingsResponse], until_readings: int
) -> tuple[list[float], list[int], list[str], list[tuple[int, int]]]:
    """Readings until ``until_readings`` have arrived, and each gap as (readings before it, missed)."""
    values: list[float] = []
    sequences: list[int] = []
    categories: list[str] = []
    gaps: list[tuple[int, int]] = []
    for message in stream:
        v, s, c, missed = decoded(message)
        values += v
        sequences += s
        categories += c
        if missed:
            gaps.append((len(values), missed))
        if len(values) >= until_readings:
            break
    return values, sequences, categories, gaps


@pytest.fixture
def server(make_ingestor: MakeIngestor) -> ThreadedIngestor:
    return make_ingestor(capacity=1000)


def test_pieces_know_each_readings_sequence_number_through_split_select_and_slices() -> None:
    store = ReadingStore(capacity=100_000)
    hub = WatchHub(store, buffer_readings=100_000, buffer_bytes=10**9)
    names = ["A", "B", "C"]
    with hub.subscribe() as everything, hub.subscribe(frozenset({"B"})) as only_b:
        for size in (3, 5000, 7):  # 5,000 is split into pieces of 4,096 and 904
            codes = store.encode_categories([names[(store.total_ingested + i) % 3] for i in range(size)])
            start = store.total_ingested
            store.append(Columns(np.arange(size, dtype=np.int64), np.arange(start, start + size, dtype="f8"), codes))
        pieces = [piece for piece, _ in everything._pieces]
        assert np.concatenate([p.sequences for p in pieces]).tolist() == list(range(5010))
        b_pieces = [piece for piece, _ in only_b._pieces]
        b_sequences = np.concatenate([p.sequences for p in b_pieces]).tolist()
        assert b_sequences == [s for s in range(5010) if s % 3 == 1]
        # The values were the sequence numbers: each piece's numbers belong to its readings.
        for piece in (*pieces, *b_pieces):
            assert piece.values.tolist() == piece.sequences.astype(float).tolist()
            assert piece.tail(2).sequences.tolist() == piece.sequences[2:].tolist()
            assert piece.head(2).sequences.tolist() == piece.sequences[:2].tolist()
    # Filtered pieces carry two bytes an offset, and count them.
    filtered = select(
        split(name_columns(Columns(np.zeros(4), np.zeros(4), np.array([0, 1, 0, 1])), ["A", "B"], 10)), frozenset({"B"})
    )
    assert filtered[0].sequences.tolist() == [11, 13]
    assert filtered[0].nbytes == 2 * (8 + 8 + 1 + 2)


def test_a_replay_reads_each_piece_when_it_is_due_and_counts_what_was_evicted_meanwhile() -> None:
    store = ReadingStore(capacity=10_000)
    codes = store.encode_categories(["A", "B"] * 5000)
    store.append(Columns(np.arange(10_000, dtype=np.int64), np.arange(10_000, dtype="f8"), codes))
    replay = replay_deliveries(store, frozenset(), 100, 10_000)
    first = next(replay)
    assert first.missed == 0
    assert first.batches[0].sequences.tolist() == list(range(100, 4196))
    # 6,000 more arrive: sequence numbers below 6,000 are gone before the next piece is read.
    more = store.encode_categories(["A"] * 6000)
    store.append(Columns(np.zeros(6000, dtype=np.int64), np.arange(10_000, 16_000, dtype="f8"), more))
    gap = next(replay)
    assert (gap.batches, gap.missed) == ([], 6000 - 4196)
    rest = list(replay)
    assert np.concatenate([d.batches[0].sequences for d in rest]).tolist() == list(range(6000, 10_000))
    assert sum(d.missed for d in rest) == 0
    # A filter keeps its readings' own numbers.
    only_b = list(replay_deliveries(store, frozenset({"B"}), 9000, 10_000))
    assert np.concatenate([d.batches[0].sequences for d in only_b]).tolist() == list(range(9001, 10_000, 2))
    assert {name for d in only_b for name in d.batches[0].names} == {"B"}


def test_the_columnar_form_carries_sequence_numbers_only_when_asked(server: ThreadedIngestor) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        plain = stub.WatchReadings(pb.WatchReadingsRequest(columnar=True), timeout=30)
        numbered = stub.WatchReadings(pb.WatchReadingsRequest(columnar=True, sequences=True), timeout=30)
        plain.initial_metadata()
        numbered.initial_metadata()
        push(stub, [0.0, 1.0, 2.0], ["A", "B", "A"])
        assert next(plain).columns.sequences == b""
        assert decoded(next(numbered))[:3] == ([0.0, 1.0, 2.0], [0, 1, 2], ["A", "B", "A"])
        plain.cancel()
        numbered.cancel()


def test_a_resumed_subscription_replays_the_held_readings_then_the_live_ones_each_once(
    server: ThreadedIngestor,
) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        push(stub, [float(i) for i in range(10)], ["A", "B"] * 5)
        request = pb.WatchReadingsRequest(columnar=True, sequences=True, after_sequence=4)
        stream = stub.WatchReadings(request, timeout=30)
        stream.initial_metadata()
        push(stub, [10.0, 11.0], ["A", "B"])
        values, sequences, categories, gaps = collect(stream, 8)
        assert values == [float(i) for i in range(4, 12)]
        assert sequences == list(range(4, 12))
        assert categories == ["A", "B"] * 4
        assert gaps == []
        stream.cancel()
        # Of one category: its own readings, with their own numbers.
        request = pb.WatchReadingsRequest(columnar=True, sequences=True, after_sequence=5, categories=["B"])
        stream = stub.WatchReadings(request, timeout=30)
        assert collect(stream, 4)[:2] == ([5.0, 7.0, 9.0, 11.0], [5, 7, 9, 11])
        stream.cancel()
        # A number from another run of the ingestor (beyond the newest reading): live readings only.
        stream = stub.WatchReadings(pb.WatchReadingsRequest(columnar=True, sequences=True, after_sequence=10**9))
        stream.initial_metadata()
        push(stub, [12.0], ["A"])
        assert collect(stream, 1)[:2] == ([12.0], [12])
        stream.cancel()


def test_readings_evicted_before_a_replay_are_counted_as_missed(server: ThreadedIngestor) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        push(stub, [float(i) for i in range(1500)], ["A"] * 1500)  # capacity 1,000: 0 to 499 evicted
        stream = stub.WatchReadings(pb.WatchReadingsRequest(columnar=True, sequences=True, after_sequence=200))
        values, sequences, _, gaps = collect(stream, 1000)
        assert gaps == [(0, 300)]
        assert sequences == list(range(500, 1500))
        assert values == [float(s) for s in sequences]
        stream.cancel()


@pytest.mark.slow
def test_a_replay_while_generating_fast_repeats_nothing_and_skips_nothing_unannounced(
    make_ingestor: MakeIngestor,
) -> None:
    server = make_ingestor(capacity=200_000, rate_hz=20_000)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        stub.StartIngestion(pb.StartIngestionRequest(), timeout=10)
        time.sleep(1.0)
        total = stub.GetStatus(pb.GetStatusRequest(), timeout=10).total_ingested
        start = total - 15_000
        request = pb.WatchReadingsRequest(columnar=True, sequences=True, after_sequence=start)
        stream = stub.WatchReadings(request, timeout=60)
        _, sequences, _, gaps = collect(stream, 60_000)
        stream.cancel()
        stub.StopIngestion(pb.StopIngestionRequest(), timeout=10)
    expected_missed = 0
    cursor = start
    # Every number from start on, in order, each once; a jump only where a gap says how far.
    gaps_at = dict(gaps)
    for index, sequence in enumerate(sequences):
        cursor += gaps_at.get(index, 0)
        expected_missed += gaps_at.get(index, 0)
        assert sequence == cursor, f"reading {index}: sequence {sequence}, expected {cursor}"
        cursor += 1
    assert len(set(sequences)) == len(sequences)
    assert expected_missed == sum(m for _, m in gaps)


@pytest.mark.slow
@pytest.mark.serial
def test_a_replay_does_not_hold_up_the_loop_for_other_callers(make_ingestor: MakeIngestor) -> None:
    """A replay of the whole buffer is read a piece at a time: GetStatus keeps answering meanwhile."""
    server = make_ingestor(capacity=500_000, rate_hz=1)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        values = [float(i % 1000) for i in range(10_000)]
        for _ in range(50):
            push(stub, values, ["A"] * len(values))
        stream = stub.WatchReadings(pb.WatchReadingsRequest(columnar=True, sequences=True, after_sequence=0))
        slowest = 0.0
        done = threading.Event()

        def poll() -> None:
            nonlocal slowest
            while not done.is_set():
                began = time.perf_counter()
                stub.GetStatus(pb.GetStatusRequest(), timeout=10)
                slowest = max(slowest, time.perf_counter() - began)
                time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        _, sequences, _, gaps = collect(stream, 500_000)
        done.set()
        poller.join()
        stream.cancel()
    assert sequences == list(range(500_000))
    assert gaps == []
    assert slowest < 1.0
