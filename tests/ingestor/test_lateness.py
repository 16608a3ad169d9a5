"""Late readings at the ingestor: counted as they are stored, flagged on demand in exports and live streams.

The reference is a plain loop over every reading ever stored: late when its event time is older than
the newest event time stored before it.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from devtools.processes import ThreadedIngestor
from functions.wire import decode_export_response
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.references import LateReference

T0 = 1_705_744_800


@pytest.mark.parametrize("capacity", [5, 100, 5000, 10_000])
def test_flags_and_counts_match_a_loop_over_every_reading_through_eviction(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    store = ReadingStore(capacity)
    stored: list[int] = []
    names: list[str] = []
    per_category: dict[str, int] = {}  # since the category came into use; forgotten with its last reading
    reference = LateReference()
    for _ in range(60):
        n = int(rng.integers(0, 3 * capacity // 2 + 2))  # some batches larger than the ring
        timestamps = rng.integers(0, 10**6, n).astype(np.int64)
        if rng.random() < 0.5:
            timestamps = np.sort(timestamps) + len(stored) * 1000  # in order, mostly
        batch_names = rng.choice(["a", "b", "c"], n).tolist()
        store.append(Columns(timestamps, np.zeros(n), store.encode_categories(batch_names)))
        reference.extend(timestamps.tolist())
        late = reference.flags
        for is_late, name in zip(late[len(stored) :], batch_names, strict=True):
            per_category[name] = per_category.get(name, 0) + is_late
        stored += timestamps.tolist()
        names += batch_names
        held = np.arange(store.oldest_sequence, store.total_ingested)
        if len(held):
            picked = np.sort(rng.choice(held, min(len(held), 64), replace=False))
            assert store.late_flags(picked).tolist() == [int(late[s]) for s in picked.tolist()]
            assert store.late_flags(held).tolist() == [int(x) for x in late[store.oldest_sequence :]]
        assert store.lateness.late == sum(late)
        in_use = set(names[store.oldest_sequence :])
        per_category = {name: count for name, count in per_category.items() if name in in_use}
        assert dict(store.lateness.by_category) == {name: count for name, count in per_category.items() if count}


def _write(stub: pb_grpc.IngestorServiceStub, rows: list[tuple[int, str]]) -> None:
    readings = [pb.Reading(timestamp={"seconds": T0 + t}, value=float(t), category=c) for t, c in rows]
    stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=5)


def test_status_counts_late_readings_and_exports_flag_them_on_request(channel: grpc.Channel) -> None:
    stub = pb_grpc.IngestorServiceStub(channel)
    stub.StopIngestion(pb.StopIngestionRequest(), timeout=5)
    base = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
    assert base.late == 0
    rows = [(10, "A"), (12, "B"), (11, "A"), (12, "A"), (5, "B"), (20, "A"), (19, "B"), (19, "B")]
    _write(stub, rows)
    status = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
    assert status.late == 4  # 11, 5, 19, 19: each older than the newest before it (12, 12, 20, 20)
    assert dict(status.late_by_category) == {"A": 1, "B": 3}

    def export(**fields: object) -> list[bytes]:
        call = channel.unary_stream("/ingestor.v1.IngestorService/ExportReadings")
        return list(call(pb.ExportReadingsRequest(**fields).SerializeToString(), timeout=5))

    flagged = [decode_export_response(m) for m in export(late_flags=True)]
    values = np.concatenate([c.values for c in flagged])
    late = np.concatenate([c.late for c in flagged])
    tail = late[-len(rows) :].tolist()
    assert values[-len(rows) :].tolist() == [float(t) for t, _ in rows]
    assert tail == [0, 0, 1, 0, 1, 0, 1, 1]
    # Filtered, the flags still count every category's readings before.
    only_b = [decode_export_response(m) for m in export(late_flags=True, categories=["B"], since={"seconds": T0})]
    assert np.concatenate([c.late for c in only_b]).tolist() == [0, 1, 1, 1]
    # Not asked for: no late column on the wire, the bytes as before.
    plain = export()
    assert all(decode_export_response(m).late is None for m in plain)
    assert b"".join(plain) == b"".join(export(late_flags=False))


def test_a_live_subscriber_gets_late_flags_and_where_its_readings_start(ingestor: ThreadedIngestor) -> None:
    ingestor.stop_generator()
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        _write(stub, [(10, "A")])
        total = stub.GetStatus(pb.GetStatusRequest(), timeout=5).total_ingested
        flagged = stub.WatchReadings(pb.WatchReadingsRequest(columnar=True, late_flags=True), timeout=10)
        plain = stub.WatchReadings(pb.WatchReadingsRequest(columnar=True, categories=["B"]), timeout=10)
        assert dict(flagged.initial_metadata())["next-sequence"] == str(total)
        assert dict(plain.initial_metadata())["next-sequence"] == str(total)
        _write(stub, [(12, "B"), (9, "A"), (8, "B"), (13, "A")])
        message = next(flagged)
        assert np.frombuffer(message.columns.late, np.uint8).tolist() == [0, 1, 1, 0]
        other = next(plain)
        assert np.frombuffer(other.columns.values, "<f8").tolist() == [12.0, 8.0]
        assert other.columns.late == b""
        flagged.cancel()
        plain.cancel()
