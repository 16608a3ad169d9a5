"""Tumbling windows and extra statistics: pure pandas against plain-Python references, then over HTTP."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

import grpc
import numpy as np
import pytest

from devtools.processes import ServerProcess
from functions.processing import EXTRA_STATS, TooManyGroups, aggregate, aggregate_records
from functions.readings import Readings
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http
from tests.support.references import percentile
from tests.support.rows import readings

T0 = 1_705_744_800_000_000_000  # 2024-01-20T10:00:00Z in nanoseconds
S = 1_000_000_000


def test_window_boundaries_are_epoch_aligned_and_exclusive_at_the_end() -> None:
    minute = 60 * S
    data = readings(
        [
            (T0 - 1, 1.0, "A"),  # 09:59:59.999999999: previous window
            (T0, 2.0, "A"),  # exactly on the boundary: starts the 10:00 window
            (T0 + minute - 1, 4.0, "A"),
            (T0 + minute, 8.0, "A"),  # the end is exclusive: next window
            (T0 + 30 * S, 5.0, "B"),
            (T0 + 5 * minute, 7.0, "B"),  # empty windows between are left out
            (T0 + 10 * S, 3.0, "B"),  # late: lands in its own (event-time) window
        ],
        dictionary=["B", "A"],
    )
    records = aggregate_records(aggregate(data, window_ns=minute), [])
    assert [(r["window_start"][11:19], r["window_end"][11:19], r["category"], r["count"]) for r in records] == [
        ("09:59:00", "10:00:00", "A", 1),
        ("10:00:00", "10:01:00", "A", 2),
        ("10:00:00", "10:01:00", "B", 2),
        ("10:01:00", "10:02:00", "A", 1),
        ("10:05:00", "10:06:00", "B", 1),
    ]
    assert list(records[1]) == ["category", "avg_value", "count", "last_timestamp", "window_start", "window_end"]
    assert records[2] == {
        "category": "B",
        "avg_value": 4.0,
        "count": 2,
        "last_timestamp": "2024-01-20T10:00:30.000000Z",
        "window_start": "2024-01-20T10:00:00.000000Z",
        "window_end": "2024-01-20T10:01:00.000000Z",
    }


def test_every_statistic_matches_a_straightforward_reference() -> None:
    rng = np.random.default_rng(11)
    n = 5_000
    names = ["x", "y", "z", "w"]
    data = Readings(
        rng.integers(T0, T0 + 3600 * S, n),
        np.round(rng.normal(50, 10, n), 3),
        rng.integers(0, len(names), n).astype(np.uint16),
        names,
    )
    window = 600 * S
    records = aggregate_records(aggregate(data, window_ns=window, stats=EXTRA_STATS), EXTRA_STATS)

    groups: dict[tuple[int, str], list[tuple[int, float]]] = defaultdict(list)
    for t, v, c in zip(data.timestamps_ns.tolist(), data.values.tolist(), data.codes.tolist(), strict=True):
        groups[(t // window * window, names[c])].append((t, v))
    assert len(records) == len(groups)
    for record, (key, items) in zip(records, sorted(groups.items()), strict=True):
        values = [v for _, v in items]
        stamps = [t for t, _ in items]
        assert (record["window_start"], record["category"]) == (
            np.datetime_as_string(np.datetime64(key[0], "ns").astype("datetime64[us]"), timezone="UTC"),
            key[1],
        )
        assert record["count"] == len(values)
        assert record["min"] == min(values)
        assert record["max"] == max(values)
        assert record["sum"] == pytest.approx(math.fsum(values), rel=1e-12)
        assert record["avg_value"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert record["std"] == pytest.approx(statistics.stdev(values), rel=1e-9)
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
            assert record[name] == pytest.approx(percentile(values, q), rel=1e-12), name
        assert record["first_timestamp"][:19] == np.datetime_as_string(np.datetime64(min(stamps), "ns"), unit="s")
        assert list(record)[:4] == ["category", "avg_value", "count", "last_timestamp"]
        assert list(record)[6:] == list(EXTRA_STATS)


def test_std_is_null_for_a_single_reading_and_stats_follow_the_order_asked() -> None:
    data = readings([(T0, 2.0, "A"), (T0 + S, 4.0, "B"), (T0 + 2 * S, 8.0, "B")], dictionary=["A", "B"])
    records = aggregate_records(aggregate(data, stats=["p50", "std", "min"]), ["p50", "std", "min"])
    assert records == [
        {
            "category": "A",
            "avg_value": 2.0,
            "count": 1,
            "last_timestamp": "2024-01-20T10:00:00.000000Z",
            "p50": 2.0,
            "std": None,
            "min": 2.0,
        },
        {
            "category": "B",
            "avg_value": 6.0,
            "count": 2,
            "last_timestamp": "2024-01-20T10:00:02.000000Z",
            "p50": 6.0,
            "std": statistics.stdev([4.0, 8.0]),
            "min": 4.0,
        },
    ]
    assert aggregate_records(aggregate(Readings.empty(), window_ns=S, stats=["max"]), ["max"]) == []


def test_too_many_result_objects_is_refused() -> None:
    data = readings([(T0 + i * S, 1.0, "A") for i in range(11)], dictionary=["A"])
    with pytest.raises(TooManyGroups):
        aggregate(data, window_ns=S, max_groups=10)
    assert len(aggregate(data, window_ns=S, max_groups=11)) == 11


def test_processed_data_over_http(api_process: ServerProcess, ingestor_process: ServerProcess) -> None:
    base = T0 // S
    rows = [(base + i, float(i % 7), "ABC"[i % 3]) for i in range(600)]  # ten minutes, one a second
    with grpc.insecure_channel(ingestor_process.address) as channel:
        readings_ = [pb.Reading(timestamp={"seconds": t}, value=v, category=c) for t, v, c in rows]
        pb_grpc.IngestorServiceStub(channel).WriteReadings(pb.WriteReadingsRequest(readings=readings_), timeout=10)
    with api_http(api_process) as http:
        plain = http.get("/processed-data").json()
        assert [list(r) for r in plain] == [["category", "avg_value", "count", "last_timestamp"]] * 3

        filtered = http.get(
            "/processed-data", params={"category": "B", "since": "2024-01-20T10:01:00", "until": "2024-01-20T10:02:00"}
        ).json()
        expected = [v for t, v, c in rows if c == "B" and base + 60 <= t < base + 120]
        assert filtered == [
            {
                "category": "B",
                "avg_value": statistics.fmean(expected),
                "count": 20,
                "last_timestamp": "2024-01-20T10:01:58.000000Z",
            }
        ]

        windows = http.get("/processed-data", params={"window": "5m", "stats": "max,std", "category": "A"}).json()
        assert [(w["window_start"], w["window_end"], w["count"]) for w in windows] == [
            ("2024-01-20T10:00:00.000000Z", "2024-01-20T10:05:00.000000Z", 100),
            ("2024-01-20T10:05:00.000000Z", "2024-01-20T10:10:00.000000Z", 100),
        ]
        assert [w["max"] for w in windows] == [6.0, 6.0]
        first = [v for t, v, c in rows if c == "A" and t < base + 300]
        assert windows[0]["std"] == pytest.approx(statistics.stdev(first), rel=1e-12)

        for params, loc, words in (
            ({"window": "0s"}, ["query", "window"], "pattern"),
            ({"window": "2d"}, ["query", "window"], "between 1s and 1d"),
            ({"window": "1w"}, ["query", "window"], "pattern"),
            ({"stats": "min,median,p42"}, ["query", "stats"], "median, p42; allowed: min, max, sum, std"),
        ):
            response = http.get("/processed-data", params={**params, "since": "2024-01-20T09:00:00"})
            assert response.status_code == 422, params
            assert response.json()["detail"][0]["loc"] == loc
            assert words in response.json()["detail"][0]["msg"]


def test_more_than_ten_thousand_windows_is_a_422(api_process: ServerProcess, ingestor_process: ServerProcess) -> None:
    base = T0 // S
    columns = pb.ReadingColumns(
        timestamps_ns=((base + np.arange(10_001)) * S).astype("<i8").tobytes(),
        values=np.ones(10_001, "<f8").tobytes(),
        category_codes=np.zeros(10_001, "<u2").tobytes(),
    )
    with grpc.insecure_channel(ingestor_process.address) as channel:
        pb_grpc.IngestorServiceStub(channel).WriteReadings(
            pb.WriteReadingsRequest(columns=columns, column_categories=["A"]), timeout=10
        )
    with api_http(api_process) as http:
        response = http.get("/processed-data", params={"window": "1s"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["msg"].startswith("10001 result objects, more than 10000")
        assert len(http.get("/processed-data", params={"window": "2s"}).json()) == 5001
