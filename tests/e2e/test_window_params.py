"""The window parameters of /processed-data over HTTP, and late readings in /status: known readings,
answers written out by hand."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest

from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http
from tests.support.factories import MakeIngestor, MakeProcess

pytestmark = pytest.mark.slow  # real uvicorn (and a real ingestor) per module

T0 = 1_705_744_800  # 2024-01-20T10:00:00Z


@pytest.fixture(scope="module")
def http(make_module_ingestor: MakeIngestor, make_module_api_process: MakeProcess) -> Iterator[httpx.Client]:
    ingestor = make_module_ingestor(capacity=1000)
    ingestor.stop_generator()
    rows = [(0, 1.0, "A"), (10, 3.0, "A"), (40, 5.0, "A"), (25, 7.0, "B"), (5, 9.0, "A")]  # the last two late
    with grpc.insecure_channel(ingestor.address) as channel:
        readings = [pb.Reading(timestamp={"seconds": T0 + t}, value=v, category=c) for t, v, c in rows]
        pb_grpc.IngestorServiceStub(channel).WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=5)
    with api_http(make_module_api_process(ingestor.address)) as client:
        yield client


def iso(seconds: int) -> str:
    return f"2024-01-20T10:00:{seconds:02d}.000000Z"


def test_status_counts_the_late_reading(http: httpx.Client) -> None:
    status = http.get("/status").json()
    assert (status["late"], status["late_by_category"]) == (2, {"A": 1, "B": 1})


def test_hopping_with_grace_emit_final_and_late(http: httpx.Client) -> None:
    answer = http.get(
        "/processed-data",
        params={"window": "20s", "step": "10s", "grace": "5s", "emit": "final", "stats": "late", "category": "A"},
    ).json()
    # Watermark 10:00:40: closed when window_end + 5 s <= 40 s, so windows ending by 10:00:35.
    assert answer == [
        {"category": "A", "avg_value": 5.0, "count": 2, "last_timestamp": iso(5),
         "window_start": "2024-01-20T09:59:50.000000Z", "window_end": iso(10), "closed": True, "late": 1},
        {"category": "A", "avg_value": 13 / 3, "count": 3, "last_timestamp": iso(10), "window_start": iso(0),
         "window_end": iso(20), "closed": True, "late": 1},
        {"category": "A", "avg_value": 3.0, "count": 1, "last_timestamp": iso(10), "window_start": iso(10),
         "window_end": iso(30), "closed": True, "late": 0},
    ]  # fmt: skip


def test_sessions_and_fill_over_http(http: httpx.Client) -> None:
    sessions = http.get("/processed-data", params={"session_gap": "6s", "grace": "0s"}).json()
    assert [(s["category"], s["count"], s["window_start"], s["window_end"], s["closed"]) for s in sessions] == [
        ("A", 3, iso(0), iso(16), True),
        ("B", 1, iso(25), iso(31), True),
        ("A", 1, iso(40), iso(46), False),
    ]
    filled = http.get("/processed-data", params={"window": "10s", "fill": "linear", "category": "A"}).json()
    assert [(f["window_start"], f["count"], f["avg_value"], f["last_timestamp"]) for f in filled] == [
        (iso(0), 2, 5.0, iso(5)),
        (iso(10), 1, 3.0, iso(10)),
        (iso(20), 0, 3.0 + 2 / 3, None),  # a third of the way from 3.0 to 5.0
        (iso(30), 0, 3.0 + 4 / 3, None),
        (iso(40), 1, 5.0, iso(40)),
    ]


def test_without_the_new_parameters_nothing_changes(http: httpx.Client) -> None:
    tumbling = http.get("/processed-data", params={"window": "10s"}).json()
    assert all(list(w) == [*list(w)[:6]] for w in tumbling)
    assert list(tumbling[0]) == ["category", "avg_value", "count", "last_timestamp", "window_start", "window_end"]
    assert http.get("/processed-data", params={"window": "10s", "step": "10s"}).json() == tumbling


def test_the_cap_says_how_many_objects_it_would_have_been(http: httpx.Client) -> None:
    response = http.get(
        "/processed-data",
        params={"window": "1s", "fill": "null", "since": "2024-01-20T07:00:00Z", "until": "2024-01-20T11:00:00Z"},
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "window"]
    assert error["msg"].startswith("28800 result objects, more than 10000")  # 4 h of seconds, A and B
