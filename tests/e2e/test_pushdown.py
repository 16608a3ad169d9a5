"""/processed-data through partials equals /processed-data through the readings, over HTTP.

One ingestor with small blocks (most of them sealed, one cut by eviction, one open) and two API
processes on it: the default one, and one with AGGREGATE_PUSHDOWN=false that always fetches the
readings. Every query gets the same answer from both, field by field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from devtools.processes import ThreadedIngestor, start_api_process
from devtools.waiting import wait_until
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import http_client

pytestmark = pytest.mark.slow  # two real uvicorn processes and an ingestor per module

S = 1_000_000_000
T0 = 1_705_744_800 * S
SINCE = "2024-01-20T10:01:00Z"
UNTIL = "2024-01-20T10:04:30.5Z"


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[httpx.Client, httpx.Client]]:
    ingestor = ThreadedIngestor(capacity=2500, block_readings=64)
    rng = np.random.default_rng(17)
    n = 3000  # 500 evicted: the oldest held block lost some of its readings
    seconds = np.sort(rng.integers(0, 600, n)) + rng.integers(-20, 3, n) * (rng.random(n) < 0.1)  # some late
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        stub.WriteReadings(
            pb.WriteReadingsRequest(
                columns=pb.ReadingColumns(
                    timestamps_ns=(T0 + seconds * S + rng.integers(0, 4, n) * (S // 4)).astype("<i8").tobytes(),
                    values=np.round(rng.normal(40, 12, n), 2).astype("<f8").tobytes(),
                    category_codes=rng.choice(3, n, p=[0.6, 0.35, 0.05]).astype("<u2").tobytes(),
                ),
                column_categories=["north", "south", "rare"],
            ),
            timeout=5,
        )
        wait_until(lambda: stub.GetStatus(pb.GetStatusRequest(), timeout=5).sealed_blocks >= 38, 10, "sealed blocks")
    pushed = start_api_process(ingestor.address)
    raw = start_api_process(ingestor.address, AGGREGATE_PUSHDOWN="false")
    with (
        http_client(f"http://{pushed.address}/api/v1", timeout=10) as pushed_http,
        http_client(f"http://{raw.address}/api/v1", timeout=10) as raw_http,
    ):
        yield pushed_http, raw_http
    pushed.stop()
    raw.stop()
    ingestor.close()


QUERIES: list[dict[str, str]] = [
    {},
    {"category": "rare"},
    {"since": SINCE, "until": UNTIL},
    {"stats": "min,max,sum,std,first_timestamp"},
    {"window": "1m", "stats": "std,min,max,sum"},
    {"window": "10s", "category": "south", "since": SINCE},
    {"window": "1m", "step": "10s", "stats": "min,max,std"},
    {"window": "30s", "grace": "1m", "stats": "first_timestamp"},
    {"window": "30s", "emit": "final", "until": UNTIL},
    {"window": "5s", "fill": "linear", "stats": "std", "category": "rare"},
    {"window": "5s", "step": "1s", "fill": "previous", "since": SINCE, "until": UNTIL},
    {"window": "1m", "fill": "zero", "stats": "sum"},
    {"window": "1s"},  # past 10,000 objects? no: 600 s x 3 categories; answered in full
    {"window": "1m", "format": "csv", "stats": "max"},
    # Not mergeable: both fetch the readings.
    {"stats": "p50,p99"},
    {"window": "1m", "stats": "late,min"},
    {"session_gap": "5s"},
]


def assert_same(pushed: list[dict[str, Any]], raw: list[dict[str, Any]]) -> None:
    assert [list(row) for row in pushed] == [list(row) for row in raw]
    for a, b in zip(pushed, raw, strict=True):
        for key, expected in b.items():
            if isinstance(expected, float):
                assert math.isclose(a[key], expected, rel_tol=1e-12, abs_tol=1e-9), (key, a, b)
            else:
                assert a[key] == expected, (key, a, b)


@pytest.mark.parametrize(
    "params", QUERIES, ids=lambda params: "&".join(f"{k}={v}" for k, v in params.items()) or "seed"
)
def test_partials_and_readings_give_the_same_answer(
    clients: tuple[httpx.Client, httpx.Client], params: dict[str, str]
) -> None:
    pushed, raw = (client.get("/processed-data", params=params) for client in clients)
    assert pushed.status_code == raw.status_code == 200, (pushed.text, raw.text)
    if params.get("format") == "csv":
        lines = [response.text.splitlines() for response in (pushed, raw)]
        assert lines[0][0] == lines[1][0]
        assert len(lines[0]) == len(lines[1]) > 1
        return
    assert_same(pushed.json(), raw.json())
    assert len(raw.json()) > 0


def test_the_cap_is_the_same_refusal(clients: tuple[httpx.Client, httpx.Client]) -> None:
    params = {"window": "1s", "step": "1s", "fill": "null", "since": "2024-01-20T00:00:00Z"}
    pushed, raw = (client.get("/processed-data", params=params) for client in clients)
    assert pushed.status_code == raw.status_code == 422
    assert pushed.json() == raw.json()
