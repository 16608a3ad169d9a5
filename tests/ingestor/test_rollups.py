"""Rollups per (category, minute): exact against plain-Python sums over every reading written, late
ones and evicted ones included; retention by event time; GetHistory's buckets and its refusals."""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from collections.abc import Iterable

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from devtools.processes import ThreadedIngestor
from functions.wire import decode_partials
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor

MINUTE_NS = 60_000_000_000
T0_NS = 1_705_744_800 * 1_000_000_000  # 2024-01-20T10:00:00Z
Reading = tuple[int, float, str]


def write(stub: pb_grpc.IngestorServiceStub, readings: list[Reading]) -> None:
    names = sorted({category for _, _, category in readings})
    stub.WriteReadings(
        pb.WriteReadingsRequest(
            columns=pb.ReadingColumns(
                timestamps_ns=np.array([t for t, _, _ in readings], "<i8").tobytes(),
                values=np.array([v for _, v, _ in readings], "<f8").tobytes(),
                category_codes=np.array([names.index(c) for _, _, c in readings], "<u2").tobytes(),
            ),
            column_categories=names,
        )
    )


def history(
    stub: pb_grpc.IngestorServiceStub, bucket_minutes: int = 1, **fields: object
) -> dict[tuple[str, int], dict[str, float]]:
    response = stub.GetHistory(pb.GetHistoryRequest(bucket_minutes=bucket_minutes, **fields))
    rows = decode_partials(response)
    return {
        (row.category, int(row.key)): {
            "count": int(row.count),
            "sum": float(row.total),
            "min": float(row.minimum),
            "max": float(row.maximum),
            "first": int(row.first_ns),
            "last": int(row.last_ns),
            "mean": float(row.mean),
            "std": math.sqrt(row.m2 / (row.count - 1)) if row.count > 1 else math.nan,
        }
        for row in rows.itertuples()
    }


def reference(readings: Iterable[Reading], bucket_minutes: int = 1) -> dict[tuple[str, int], dict[str, float]]:
    groups: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
    for t, v, c in readings:
        groups[(c, t // MINUTE_NS // bucket_minutes)].append((t, v))
    return {
        key: {
            "count": len(items),
            "sum": math.fsum(v for _, v in items),
            "min": min(v for _, v in items),
            "max": max(v for _, v in items),
            "first": min(t for t, _ in items),
            "last": max(t for t, _ in items),
            "mean": statistics.fmean(v for _, v in items),
            "std": statistics.stdev([v for _, v in items]) if len(items) > 1 else math.nan,
        }
        for key, items in groups.items()
    }


def assert_same(
    got: dict[tuple[str, int], dict[str, float]], expected: dict[tuple[str, int], dict[str, float]]
) -> None:
    assert got.keys() == expected.keys()
    for key, want in expected.items():
        have = got[key]
        for name in ("count", "min", "max", "first", "last"):
            assert have[name] == want[name], (key, name)
        for name in ("sum", "mean", "std"):
            assert have[name] == pytest.approx(want[name], rel=1e-12, abs=1e-9, nan_ok=True), (key, name)


def random_readings(rng: random.Random, count: int, start_ns: int, span_minutes: int) -> list[Reading]:
    """Mostly in order, a tenth of them late by up to ten minutes, over a few categories."""
    readings = []
    for i in range(count):
        t = start_ns + i * span_minutes * MINUTE_NS // count
        if rng.random() < 0.1:
            t -= rng.randrange(10 * MINUTE_NS)
        readings.append((t, round(rng.gauss(50, 10), 2), rng.choice("ABC")))
    return readings


@pytest.fixture
def server(make_ingestor: MakeIngestor) -> ThreadedIngestor:
    return make_ingestor(capacity=500)


def test_rollups_count_every_reading_written_late_and_evicted_ones_included(server: ThreadedIngestor) -> None:
    rng = random.Random(18)
    readings = random_readings(rng, 6000, T0_NS, 45)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for start in range(0, len(readings), 700):
            write(stub, readings[start : start + 700])
        status = stub.GetStatus(pb.GetStatusRequest())
        assert status.evicted == 5500  # the buffer holds 500: the rest is only in the rollups
        assert_same(history(stub), reference(readings))
        assert_same(history(stub, 15), reference(readings, 15))
        one_category = history(stub, 60, categories=["B"])
        assert_same(one_category, reference((r for r in readings if r[2] == "B"), 60))


def test_history_selects_whole_minutes_between_since_and_until(server: ThreadedIngestor) -> None:
    readings = [(T0_NS + i * 10_000_000_000, float(i), "A") for i in range(60)]  # ten minutes
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        write(stub, readings)
        since, until = Timestamp(), Timestamp()
        since.FromNanoseconds(T0_NS + 2 * MINUTE_NS + 30_000_000_000)  # rounded down to minute 2
        until.FromNanoseconds(T0_NS + 5 * MINUTE_NS)
        got = history(stub, since=since, until=until)
    minute0 = T0_NS // MINUTE_NS
    assert sorted(key for _, key in got) == [minute0 + 2, minute0 + 3, minute0 + 4]


def test_retention_drops_minutes_behind_the_newest_event_time(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=100, rollup_retention="10m")
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        write(stub, [(T0_NS + m * MINUTE_NS, 1.0, "A") for m in range(30)])
        write(stub, [(T0_NS, 5.0, "A")])  # late, and older than what is kept: not kept either
        got = history(stub)
        response = stub.GetHistory(pb.GetHistoryRequest())
    minute0 = T0_NS // MINUTE_NS
    assert sorted(key for _, key in got) == [minute0 + m for m in range(20, 30)]
    assert response.retained_since.ToNanoseconds() == T0_NS + 20 * MINUTE_NS


def test_the_buffer_oldest_event_time_is_the_smallest_held_not_the_first(server: ThreadedIngestor) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        assert not stub.GetHistory(pb.GetHistoryRequest()).HasField("buffer_oldest")
        write(stub, [(T0_NS + i, 1.0, "A") for i in range(600)])  # the first 100 are evicted
        write(stub, [(T0_NS + 50, 1.0, "A")])  # late: now the oldest held
        assert stub.GetHistory(pb.GetHistoryRequest()).buffer_oldest.ToNanoseconds() == T0_NS + 50


def test_bad_history_requests_are_refused_with_a_reason(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=10, rollups=False)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as off:
            stub.GetHistory(pb.GetHistoryRequest())
        assert off.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "rollups are off" in str(off.value.details())
    with grpc.insecure_channel(make_ingestor(capacity=10).address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as wide:
            stub.GetHistory(pb.GetHistoryRequest(bucket_minutes=1441))
        assert wide.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 1440" in str(wide.value.details())


def test_an_answer_beyond_max_rows_carries_only_how_many_rows_it_has(server: ThreadedIngestor) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        write(stub, [(T0_NS + m * MINUTE_NS, 1.0, c) for m in range(50) for c in "AB"])
        capped = stub.GetHistory(pb.GetHistoryRequest(max_rows=99))
        fits = stub.GetHistory(pb.GetHistoryRequest(max_rows=100))
    assert (capped.rows, len(capped.partials.keys), list(capped.categories)) == (100, 0, [])
    assert (fits.rows, len(fits.partials.keys) // 8) == (100, 100)
