"""GET /stream/aggregates: known readings pushed at known times give exactly the expected events, through
a real ingestor and real uvicorn; resumption with Last-Event-ID; and the feed's state alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest

from devtools.processes import ServerProcess, ThreadedIngestor
from functions.processing import WindowSpec
from functions.readings import Readings
from functions.sse import Batch, StreamFailed
from functions.window_feed import WindowFeed
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http
from tests.support.factories import MakeIngestor, MakeProcess

T0 = 1_705_744_800  # 2024-01-20T10:00:00Z
S = 1_000_000_000


@pytest.fixture
def stack(make_ingestor: MakeIngestor, make_api_process: MakeProcess) -> tuple[ThreadedIngestor, ServerProcess]:
    ingestor = make_ingestor(capacity=1000)
    ingestor.stop_generator()
    return ingestor, make_api_process(ingestor.address)


@pytest.fixture(scope="module")
def refusing_api(make_module_ingestor: MakeIngestor, make_module_api_process: MakeProcess) -> ServerProcess:
    """An API whose feed is only asked with bad parameters: one for the module, nothing stored."""
    ingestor = make_module_ingestor(capacity=1000)
    ingestor.stop_generator()
    return make_module_api_process(ingestor.address)


def push(ingestor: ThreadedIngestor, *rows: tuple[int, float, str]) -> None:
    readings = [pb.Reading(timestamp={"seconds": T0 + t}, value=v, category=c) for t, v, c in rows]
    with grpc.insecure_channel(ingestor.address) as channel:
        pb_grpc.IngestorServiceStub(channel).WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=5)


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Each event of a Server-Sent Events response: its fields, ``data`` parsed as JSON."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            event[name] = orjson.loads(value) if name == "data" else value
    if event:
        yield event


def at(seconds: int) -> str:
    return str((T0 + seconds) * S)


def window(category: str, start: int, values: list[float], last: int, closed: bool, late: int = 0) -> dict[str, Any]:
    """A window object as /processed-data?window=10s&stats=min,late would show it."""
    iso = "2024-01-20T10:00:{:02d}.000000Z".format
    return {
        "category": category,
        "avg_value": sum(values) / len(values),
        "count": len(values),
        "last_timestamp": iso(last),
        "window_start": iso(start),
        "window_end": iso(start + 10),
        "closed": closed,
        "min": min(values),
        "late": late,
    }


PARAMS = {"window": "10s", "stats": "min,late"}


@pytest.mark.slow
def test_updates_then_resumption_then_final_events(stack: tuple[ThreadedIngestor, ServerProcess]) -> None:
    ingestor, api = stack
    push(ingestor, (1, 1.0, "A"), (12, 2.0, "A"), (5, 3.0, "B"))
    with api_http(api, timeout=httpx.Timeout(10, read=5)) as http:
        with http.stream("GET", "/stream/aggregates", params=PARAMS) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            feed = events(response)
            # The windows the buffer already holds, each with whether it is closed (watermark 10:00:12).
            assert next(feed) == {
                "id": at(12),
                "data": [
                    window("A", 0, [1.0], 1, True),
                    window("B", 0, [3.0], 5, True, late=1),  # it came after 10:00:12
                    window("A", 10, [2.0], 12, False),
                ],
            }
            push(ingestor, (15, 4.0, "A"))
            assert next(feed) == {"id": at(15), "data": [window("A", 10, [2.0, 4.0], 15, False)]}
            # A late reading for a closed window is left out (and counted late at the ingestor); the
            # reading at 10:00:21 closes 10:00:10 and opens 10:00:20.
            push(ingestor, (3, 9.0, "B"), (21, 5.0, "A"))
            assert next(feed) == {
                "id": at(21),
                "data": [window("A", 10, [2.0, 4.0], 15, True), window("A", 20, [5.0], 21, False)],
            }
        push(ingestor, (25, 6.0, "A"), (31, 7.0, "A"))
        # Back with the last id: the windows open then, with what they hold now; nothing closed before.
        with http.stream("GET", "/stream/aggregates", params=PARAMS, headers={"Last-Event-ID": at(21)}) as response:
            assert next(events(response)) == {
                "id": at(31),
                "data": [window("A", 20, [5.0, 6.0], 25, True), window("A", 30, [7.0], 31, False)],
            }
        with http.stream("GET", "/stream/aggregates", params={**PARAMS, "emit": "final"}) as response:
            feed = events(response)
            # Every closed window of the buffer, the late reading in its own (pulled again: counted late).
            assert next(feed) == {
                "id": at(31),
                "data": [
                    window("A", 0, [1.0], 1, True),
                    window("B", 0, [3.0, 9.0], 5, True, late=2),
                    window("A", 10, [2.0, 4.0], 15, True),
                    window("A", 20, [5.0, 6.0], 25, True),
                ],
            }
            push(ingestor, (33, 8.0, "A"))  # changes an open window: nothing to say
            push(ingestor, (45, 1.5, "A"))  # closes 10:00:30
            assert next(feed) == {"id": at(45), "data": [window("A", 30, [7.0, 8.0], 33, True)]}
        # Resuming a final feed: only the windows closed since.
        push(ingestor, (52, 2.5, "A"))
        final = {**PARAMS, "emit": "final"}
        with http.stream("GET", "/stream/aggregates", params=final, headers={"Last-Event-ID": at(45)}) as response:
            assert next(events(response)) == {"id": at(52), "data": [window("A", 40, [1.5], 45, True)]}


@pytest.mark.slow
def test_hopping_feed_and_category_filter(stack: tuple[ThreadedIngestor, ServerProcess]) -> None:
    ingestor, api = stack
    push(ingestor, (1, 1.0, "A"), (6, 2.0, "B"), (12, 4.0, "A"))
    params = {"window": "10s", "step": "5s", "category": "A"}
    with (
        api_http(api, timeout=httpx.Timeout(10, read=5)) as http,
        http.stream("GET", "/stream/aggregates", params=params) as response,
    ):
        feed = events(response)
        first = next(feed)
        assert [(w["window_start"][17:19], w["count"], w["closed"]) for w in first["data"]] == [
            ("55", 1, True),
            ("00", 1, True),
            ("05", 1, False),
            ("10", 1, False),
        ]
        push(ingestor, (7, 8.0, "A"), (8, 9.0, "B"))  # B is not followed
        second = next(feed)
        assert second["id"] == at(12)
        assert [(w["window_start"][17:19], w["count"], w["avg_value"]) for w in second["data"]] == [
            ("05", 2, 6.0),
        ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({}, "window"),
        ({"window": "0s"}, "window"),
        ({"window": "10s", "step": "3s"}, "step"),
        ({"window": "10s", "emit": "sometimes"}, "emit"),
        ({"window": "10s", "grace": "2d"}, "grace"),
        ({"window": "10s", "stats": "median"}, "stats"),
    ],
)
def test_bad_feed_parameters_are_422(refusing_api: ServerProcess, params: dict[str, str], loc: str) -> None:
    with api_http(refusing_api) as http:
        response = http.get("/stream/aggregates", params=params)
        assert response.status_code == 422
        assert [error["loc"] for error in response.json()["detail"]] == [["query", loc]]
        bad_id = http.get("/stream/aggregates", params={"window": "10s"}, headers={"Last-Event-ID": "x1"})
        assert bad_id.status_code == 422
        assert bad_id.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


def readings(rows: list[tuple[int, float, str]]) -> Readings:
    names = sorted({c for _, _, c in rows})
    return Readings(
        np.array([(T0 + t) * S for t, _, _ in rows], dtype=np.int64),
        np.array([v for _, v, _ in rows]),
        np.array([names.index(c) for _, _, c in rows], dtype=np.uint16),
        names,
    )


def test_the_feed_reports_gaps_in_order_and_stops_beyond_its_bound() -> None:
    feed = WindowFeed(WindowSpec(10 * S, grace_ns=0), [], max_readings=3)
    out = b"".join(feed.events([Batch(readings([(1, 1.0, "A")]), missed=7), Batch(readings([(2, 2.0, "A")]))]))
    first, gap, second = out.split(b"\n\n")[:3]
    assert first.startswith(f"id: {at(1)}\ndata: ".encode())
    assert gap == b'event: gap\ndata: {"missed":7}'
    assert second.startswith(f"id: {at(2)}\ndata: ".encode())
    with pytest.raises(StreamFailed, match="more than the 3 a feed keeps"):
        list(feed.events([Batch(readings([(3, 1.0, "A"), (4, 1.0, "A")]))]))
    # Readings of closed windows are not kept: a feed holds only what can still change.
    feed = WindowFeed(WindowSpec(10 * S, grace_ns=0), [])
    list(feed.events([Batch(readings([(1, 1.0, "A"), (12, 1.0, "A"), (25, 1.0, "B")]))]))
    assert feed.held == 1


def test_a_burst_of_several_batches_with_their_own_dictionaries_folds_as_one() -> None:
    # What a burst holds when readings arrive fast: the buffered readings (one dictionary) and live
    # batches (the live call's dictionary, numbered otherwise), without late flags.
    feed = WindowFeed(WindowSpec(10 * S, grace_ns=0), ["min"])
    held = readings([(1, 1.0, "A"), (2, 5.0, "B")])
    live = Readings(
        np.array([(T0 + 3) * S, (T0 + 4) * S]), np.array([2.0, 7.0]), np.array([0, 1], np.uint16), ["B", "A"]
    )
    out = b"".join(feed.events([Batch(held), Batch(live)]))
    assert out.count(b"\n\n") == 1
    head, data = out.split(b"\ndata: ")
    assert head == f"id: {at(4)}".encode()
    by_category = {row["category"]: row for row in orjson.loads(data)}
    assert (by_category["A"]["count"], by_category["A"]["avg_value"], by_category["A"]["min"]) == (2, 4.0, 1.0)
    assert (by_category["B"]["count"], by_category["B"]["avg_value"], by_category["B"]["min"]) == (2, 3.5, 2.0)
