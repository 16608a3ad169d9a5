"""GET /history through the real app and a real ingestor: the same objects as /processed-data?window=
where the buffer holds every reading, evicted readings still counted, the buffer's start in a header,
and each bad parameter a 422 that says why."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest

from functions.timestamps import format_timestamps
from tests.support.factories import MakeIngestor
from tests.support.inprocess import api_client

# The real app and a real ingestor, loaded with thousands of readings per test: seconds in all.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

T0_NS = 1_705_744_800 * 1_000_000_000  # 2024-01-20T10:00:00Z
MINUTE_NS = 60_000_000_000
STATS = "min,max,sum,std,first_timestamp"


def iso(ns: int) -> str:
    return str(format_timestamps(np.array([ns]))[0])


def readings_over(minutes: int, per_minute: int, seed: int) -> list[dict[str, object]]:
    """Integer values (sums are exact whatever the order of additions), some readings late."""
    rng = random.Random(seed)
    items = []
    for i in range(minutes * per_minute):
        t = T0_NS + i * MINUTE_NS // per_minute
        if rng.random() < 0.05:
            t -= rng.randrange(5 * MINUTE_NS)
        items.append({"timestamp": iso(t), "value": rng.randrange(0, 100), "category": rng.choice(["A", "B", "C"])})
    return items


async def push(http: httpx.AsyncClient, items: list[dict[str, object]]) -> None:
    for start in range(0, len(items), 10_000):
        response = await http.post("/readings", json=items[start : start + 10_000])
        assert response.status_code == 202, response.text


@pytest.mark.parametrize("window", ["1m", "5m", "15m", "1h", "1d"])
async def test_history_agrees_with_processed_data_where_the_buffer_holds_everything(
    make_ingestor: MakeIngestor, window: str
) -> None:
    ingestor = make_ingestor(capacity=100_000)
    items = readings_over(180, 20, seed=len(window))
    async with api_client(ingestor_address=ingestor.address) as http:
        await push(http, items)
        params = {"window": window, "stats": STATS}
        from_rollups = await http.get("/history", params=params)
        from_buffer = await http.get("/processed-data", params=params)
    assert from_rollups.status_code == from_buffer.status_code == 200
    got, expected = from_rollups.json(), from_buffer.json()
    assert len(got) == len(expected) > 0
    # Identical but for the last bits of sums, means and deviations, which come out of different
    # merge orders (the buffer's per-second partials against the rollups' minutes).
    rounded = ("avg_value", "sum", "std")
    for have, want in zip(got, expected, strict=True):
        assert {k: v for k, v in have.items() if k not in rounded} == {
            k: v for k, v in want.items() if k not in rounded
        }
        for name in rounded:
            assert have[name] == pytest.approx(want[name], rel=1e-12) if want[name] is not None else have[name] is None
    oldest = min(int(np.datetime64(item["timestamp"][:-1], "ns").astype(np.int64)) for item in items)  # type: ignore[index]
    assert from_rollups.headers["buffer-oldest-event-time"] == iso(oldest)


async def test_history_goes_on_where_the_buffer_stops(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=1_000)
    items = [{"timestamp": iso(T0_NS + i * 1_000_000_000), "value": i % 7, "category": "A"} for i in range(6_000)]
    async with api_client(ingestor_address=ingestor.address) as http:
        await push(http, items)
        history = (await http.get("/history", params={"window": "10m"})).json()
        buffered = (await http.get("/processed-data", params={"window": "10m"})).json()
        header = (await http.get("/history", params={"window": "10m"})).headers["buffer-oldest-event-time"]
    # 6,000 seconds are 10 windows of 600 readings; the buffer holds the last 1,000 readings only.
    assert [row["count"] for row in history] == [600] * 10
    assert [row["window_start"] for row in history] == [iso(T0_NS + w * 600_000_000_000) for w in range(10)]
    assert sum(row["count"] for row in buffered) == 1_000
    assert header == iso(T0_NS + 5_000_000_000_000)


async def test_since_until_and_category_narrow_the_history(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=10_000)
    items = [{"timestamp": iso(T0_NS + i * 6_000_000_000), "value": 1, "category": c} for i in range(100) for c in "AB"]
    async with api_client(ingestor_address=ingestor.address) as http:
        await push(http, items)
        rows = (
            await http.get(
                "/history",
                params={
                    "window": "1m",
                    "category": "B",
                    "since": iso(T0_NS + 2 * MINUTE_NS),
                    "until": iso(T0_NS + 4 * MINUTE_NS),
                },
            )
        ).json()
    assert [(row["category"], row["window_start"], row["count"]) for row in rows] == [
        ("B", iso(T0_NS + 2 * MINUTE_NS), 10),
        ("B", iso(T0_NS + 3 * MINUTE_NS), 10),
    ]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({}, "Field required"),
        ({"window": "30s"}, "String should match pattern"),
        ({"window": "2d"}, "window must be between 60s and 1d"),
        ({"window": "1h", "stats": "min,p99"}, "not p99"),
        ({"window": "1h", "stats": "median"}, "unknown statistics median"),
    ],
)
async def test_bad_history_parameters_are_422_saying_why(
    make_ingestor: MakeIngestor, params: dict[str, str], says: str
) -> None:
    async with api_client(ingestor_address=make_ingestor(capacity=10).address) as http:
        response = await http.get("/history", params=params)
    assert response.status_code == 422
    assert says in response.text


async def test_more_than_ten_thousand_objects_is_a_422_that_counts_them(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=100)
    items = [{"timestamp": iso(T0_NS + m * MINUTE_NS), "value": 1, "category": "A"} for m in range(10_001)]
    async with api_client(ingestor_address=ingestor.address) as http:
        await push(http, items)
        too_many = await http.get("/history", params={"window": "1m"})
        fine = await http.get("/history", params={"window": "1h"})
    assert too_many.status_code == 422
    assert "10001" in too_many.text.replace(",", "")
    assert fine.status_code == 200
    assert sum(row["count"] for row in fine.json()) == 10_001


async def test_status_reports_the_archive_only_when_readings_are_archived(
    make_ingestor: MakeIngestor, tmp_path: Path
) -> None:
    plain = make_ingestor(capacity=10)
    archiving = make_ingestor(capacity=100, archive_url=(tmp_path / "archive").as_uri(), archive_interval_s=0.1)
    async with api_client(ingestor_address=plain.address) as http:
        assert "archive" not in (await http.get("/status")).json()
    async with api_client(ingestor_address=archiving.address) as http:
        await push(http, [{"timestamp": iso(T0_NS + i), "value": 1, "category": "A"} for i in range(25)])
        for _ in range(200):
            archive = (await http.get("/status")).json()["archive"]
            if archive["pending"] == 0:
                break
            await anyio.sleep(0.05)
    assert archive == {"archived": 25, "pending": 0, "evicted_unarchived": 0}
