"""Resuming the live feed over real HTTP: /stream events carry the sequence number of their last
reading as ``id``, a reconnect with ``Last-Event-ID`` (or ``after_sequence``) continues right after
it, and ``raw-data?after_sequence=`` is the same cursor for a client that polls."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from functions.readings import Readings
from functions.sse import Batch, encode_events
from tests.support.clients import api_http
from tests.support.factories import MakeProcess


@pytest.fixture(scope="module")
def api(make_module_ingestor_process: MakeProcess, make_module_api_process: MakeProcess) -> Iterator[httpx.Client]:
    """One ingestor and one API for the module, and a client of the API."""
    ingestor = make_module_ingestor_process(capacity=1000, rate_hz=1)
    with api_http(make_module_api_process(ingestor.address)) as http:
        yield http


class Pusher:
    """Pushes readings whose value is their own index, so a test knows which arrived."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.sent = 0

    def push(self, count: int, categories: str = "AB") -> list[float]:
        values = [float(self.sent + i) for i in range(count)]
        body = [
            {"timestamp": "2024-01-20T10:00:00Z", "value": value, "category": categories[int(value) % len(categories)]}
            for value in values
        ]
        assert self.http.post("/readings", json=body).status_code == 202
        self.sent += count
        return values


def read_events(lines: Iterator[str], readings: int) -> list[tuple[str, str | None, str]]:
    """(event, id, data) of the next events of an open stream (its ``iter_lines()``) until
    ``readings`` readings arrived."""
    events: list[tuple[str, str | None, str]] = []
    count = 0
    block: list[str] = []
    for line in lines:
        if line:
            block.append(line)
            continue
        fields = [entry.partition(": ") for entry in block if not entry.startswith(":")]
        block = []
        if not fields:
            continue
        kind = next((value for name, _, value in fields if name == "event"), "message")
        event_id = next((value for name, _, value in fields if name == "id"), None)
        data = "".join(value for name, _, value in fields if name == "data")
        events.append((kind, event_id, data))
        if kind == "message":
            count += len(json.loads(data))
        if count >= readings:
            return events
    raise AssertionError(f"the stream ended after {count} readings")


def values_of(events: list[tuple[str, str | None, str]]) -> list[float]:
    return [reading["value"] for kind, _, data in events if kind == "message" for reading in json.loads(data)]


def test_each_event_is_numbered_by_its_last_reading() -> None:
    readings = Readings(np.zeros(3, np.int64), np.array([1.0, 2.0, 3.0]), np.zeros(3, np.uint16), ["A"])
    batches = [
        Batch(readings, sequences=np.array([7, 9, 12], np.uint64)),
        Batch(readings, missed=4, sequences=np.array([13, 14, 20], np.uint64)),
    ]
    blocks = [block for block in encode_events(batches, max_readings=2).decode().split("\n\n") if block]
    assert [block.partition("\n")[0] for block in blocks] == ["id: 9", "id: 13", "id: 20", "event: gap"]
    assert blocks[3] == 'event: gap\ndata: {"missed":4}'
    # Readings whose numbers are not known make events without an id.
    assert encode_events([Batch(readings)]).startswith(b"data: ")


@pytest.mark.slow
def test_a_stream_resumed_with_last_event_id_sends_exactly_the_readings_after_it(api: httpx.Client) -> None:
    pusher = Pusher(api)
    first_at = int(api.get("/status").json()["total_ingested"])
    with api.stream("GET", "/stream") as response:
        lines = response.iter_lines()
        pusher.push(50)
        events = read_events(lines, 50)
    assert values_of(events) == [float(v) for v in range(50)]
    last_id = events[-1][1]
    assert last_id == str(first_at + 49)
    # A client reads one more reading and its connection drops; 30 more arrive while it is away.
    with api.stream("GET", "/stream") as response:
        lines = response.iter_lines()
        pusher.push(1)  # value 50
        cut = read_events(lines, 1)
    assert values_of(cut) == [50.0]
    pusher.push(30)  # 51 to 80, while no stream is open
    with api.stream("GET", "/stream", headers={"Last-Event-ID": cut[-1][1] or ""}) as response:
        lines = response.iter_lines()
        events = read_events(lines, 30)
        pusher.push(5)  # live ones follow the replayed ones
        events += read_events(lines, 5)
    assert values_of(events) == [float(v) for v in range(51, 86)]
    ids = [int(event_id) for kind, event_id, _ in events if kind == "message" and event_id]
    assert ids[-1] == first_at + 85
    assert ids == sorted(ids)


@pytest.mark.slow
def test_after_sequence_resumes_a_new_stream_and_last_event_id_wins(api: httpx.Client) -> None:
    pusher = Pusher(api)
    total = int(api.get("/status").json()["total_ingested"])
    pusher.push(10, categories="A")
    with api.stream("GET", "/stream", params={"after_sequence": total + 3}) as response:
        lines = response.iter_lines()
        assert values_of(read_events(lines, 6)) == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    with api.stream(
        "GET", "/stream", params={"after_sequence": total + 3}, headers={"Last-Event-ID": str(total + 7)}
    ) as response:
        lines = response.iter_lines()
        assert values_of(read_events(lines, 2)) == [8.0, 9.0]


@pytest.mark.slow
def test_a_resumed_category_stream_sends_that_category_only(api: httpx.Client) -> None:
    pusher = Pusher(api)
    total = int(api.get("/status").json()["total_ingested"])
    pusher.push(10, categories="AB")  # even values A, odd values B
    with api.stream("GET", "/stream", params={"after_sequence": total + 2, "category": "B"}) as response:
        lines = response.iter_lines()
        events = read_events(lines, 4)
    assert values_of(events) == [3.0, 5.0, 7.0, 9.0]
    assert events[-1][1] == str(total + 9)


@pytest.mark.slow
def test_readings_evicted_before_the_resume_are_a_gap(api: httpx.Client) -> None:
    pusher = Pusher(api)
    total = int(api.get("/status").json()["total_ingested"])
    pusher.push(1200)  # capacity 1,000: the first 200 are gone
    with api.stream("GET", "/stream", params={"after_sequence": total - 1}) as response:
        lines = response.iter_lines()
        events = read_events(lines, 1000)
    assert events[0][0] == "gap"
    assert events[0][2] == '{"missed":200}'
    assert values_of(events) == [float(v) for v in range(200, 1200)]


@pytest.mark.parametrize(
    ("params", "headers", "where"),
    [
        ({"after_sequence": "-2"}, {}, "after_sequence"),
        ({"after_sequence": "x"}, {}, "after_sequence"),
        ({"after_sequence": str(10**18)}, {}, "after_sequence"),
        ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "-1"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "1" * 19}, "Last-Event-ID"),
    ],
)
@pytest.mark.slow
def test_bad_resume_points_are_422(
    api: httpx.Client, params: dict[str, str], headers: dict[str, str], where: str
) -> None:
    response = api.get("/stream", params=params, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == where


@pytest.mark.slow
def test_polling_with_after_sequence_walks_every_reading_once(api: httpx.Client) -> None:
    pusher = Pusher(api)
    cursor = int(api.get("/status").json()["total_ingested"]) - 1
    values: list[float] = []
    for _ in range(6):
        pusher.push(7)
        response = api.get("/raw-data", params={"after_sequence": cursor, "limit": 5})
        assert response.status_code == 200
        assert "link" not in response.headers
        values += [reading["value"] for reading in response.json()]
        cursor = int(response.headers["next-after-sequence"])
    while True:  # what is left, five at a time
        response = api.get("/raw-data", params={"after_sequence": cursor, "limit": 5})
        page = [reading["value"] for reading in response.json()]
        if not page:
            assert int(response.headers["next-after-sequence"]) == cursor
            break
        values += page
        cursor = int(response.headers["next-after-sequence"])
    assert values == [float(v) for v in range(42)]
    assert cursor == int(api.get("/status").json()["total_ingested"]) - 1


@pytest.mark.slow
def test_a_polling_cursor_moves_past_readings_of_other_categories(api: httpx.Client) -> None:
    pusher = Pusher(api)
    cursor = int(api.get("/status").json()["total_ingested"]) - 1
    pusher.push(6, categories="AB")
    response = api.get("/raw-data", params={"after_sequence": cursor, "category": "A"})
    assert [reading["value"] for reading in response.json()] == [0.0, 2.0, 4.0]
    assert int(response.headers["next-after-sequence"]) == cursor + 6  # the B reading at the end included


@pytest.mark.slow
def test_a_cursor_from_before_a_restart_comes_back_to_the_newest_reading(api: httpx.Client) -> None:
    newest = int(api.get("/status").json()["total_ingested"]) - 1
    response = api.get("/raw-data", params={"after_sequence": newest + 10_000})
    assert response.json() == []
    assert int(response.headers["next-after-sequence"]) == newest


@pytest.mark.slow
def test_after_sequence_and_page_token_do_not_mix(api: httpx.Client) -> None:
    response = api.get("/raw-data", params={"after_sequence": 0, "page_token": "AQAkAgAAAAAA"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "after_sequence"]


@pytest.mark.slow
def test_the_seed_raw_data_answer_is_unchanged(api: httpx.Client) -> None:
    response = api.get("/raw-data", params={"limit": 3})
    assert "next-after-sequence" not in response.headers
    assert [set(reading) for reading in response.json()] == [{"timestamp", "value", "category"}] * 3
