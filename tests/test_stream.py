"""GET /api/v1/stream over real HTTP: Server-Sent Events, batching, category filter, and gap events."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from functions.sse import Batch, encode_events, sse_events
from tests.harness import ServerProcess, ThreadedIngestor, start_api_process, start_ingestor_process


@pytest.fixture
def live_api() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    ingestor = start_ingestor_process(capacity=1_000_000, rate_hz=200, watch_buffer=2000)
    api = start_api_process(ingestor.address)
    yield ingestor, api
    api.stop()
    ingestor.stop()


def parse_events(text: str) -> list[tuple[str, object]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        kind = next((line[7:] for line in lines if line.startswith("event: ")), "message")
        data = "".join(line[6:] for line in lines if line.startswith("data: "))
        events.append((kind, json.loads(data)))
    return events


def test_encoding_keeps_readings_and_gaps_in_order() -> None:
    a, b, c = ({"value": float(i)} for i in range(3))
    assert encode_events([Batch([a]), Batch([b], missed=5), Batch([c])]) == (
        b'data: [{"value":0.0},{"value":1.0}]\n\nevent: gap\ndata: {"missed":5}\n\ndata: [{"value":2.0}]\n\n'
    )
    assert encode_events([Batch([], missed=3)]) == b'event: gap\ndata: {"missed":3}\n\n'


def test_writes_are_batched_at_most_every_interval() -> None:
    async def scenario() -> list[tuple[float, bytes]]:
        async def source():  # a reading every 5 ms for half a second
            for i in range(100):
                yield Batch([{"i": i}])
                await asyncio.sleep(0.005)

        loop = asyncio.get_running_loop()
        return [(loop.time(), chunk) async for chunk in sse_events(source(), flush_interval_s=0.1)]

    writes = asyncio.run(scenario())
    received = [item["i"] for _, chunk in writes for _, data in parse_events(chunk.decode()) for item in data]
    assert received == list(range(100))
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(writes)]
    assert all(gap >= 0.09 for gap in gaps)
    assert len(writes) < 50  # batched: far fewer writes than readings


def test_stream_sends_new_readings_of_the_asked_categories(live_api: tuple[ServerProcess, ServerProcess]) -> None:
    _, api = live_api
    base = f"http://{api.address}/api/v1"
    with (
        httpx.Client(base_url=base, timeout=10) as http,
        http.stream("GET", "/stream", params={"category": "B"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        http.post("/start-ingestion", json={"rate_hz": 500, "categories": ["A", "B"]})
        text = ""
        started = time.monotonic()
        for chunk in response.iter_text():
            text += chunk
            if time.monotonic() - started > 1.0:
                break
        http.post("/stop-ingestion")
    events = parse_events(text)
    readings = [r for kind, data in events if kind == "message" for r in data]  # type: ignore[union-attr]
    assert len(readings) > 50
    assert {r["category"] for r in readings} == {"B"}
    assert list(readings[0]) == ["timestamp", "value", "category"]
    assert [r["timestamp"] for r in readings] == sorted(r["timestamp"] for r in readings)
    assert len(events) <= 1.0 / 0.1 + 3  # batched: not one event per reading


def test_a_client_that_stops_reading_gets_a_gap_event(live_api: tuple[ServerProcess, ServerProcess]) -> None:
    _, api = live_api
    base = f"http://{api.address}/api/v1"
    with httpx.Client(base_url=base, timeout=30) as http:
        before = http.get("/status").json()["total_ingested"]
        with http.stream("GET", "/stream") as response:
            assert response.status_code == 200
            http.post("/start-ingestion", json={"rate_hz": 300_000})
            # Reads nothing while 600,000 readings arrive: more than every buffer on the way holds.
            time.sleep(2.0)
            http.post("/stop-ingestion")
            produced = http.get("/status").json()["total_ingested"] - before
            delivered = missed = 0
            buffer = ""
            for chunk in response.iter_text():
                buffer += chunk
                complete, _, buffer = buffer.rpartition("\n\n")
                for kind, data in parse_events(complete):
                    if kind == "gap":
                        missed += data["missed"]  # type: ignore[index]
                    else:
                        delivered += len(data)  # type: ignore[arg-type]
                if delivered + missed >= produced:
                    break
    assert missed > 0
    assert delivered + missed == produced  # every reading delivered or counted, none twice


def test_a_client_that_goes_away_unsubscribes(ingestor: ThreadedIngestor) -> None:
    api = start_api_process(ingestor.address)
    try:
        hub = ingestor.running.hub
        assert hub is not None
        with httpx.Client(base_url=f"http://{api.address}/api/v1", timeout=10) as http:
            with http.stream("GET", "/stream") as response:
                assert response.status_code == 200
                assert hub.subscribers == 1
            deadline = time.monotonic() + 10
            while hub.subscribers and time.monotonic() < deadline:
                time.sleep(0.02)
            assert hub.subscribers == 0
            response = http.get("/stream", params={"category": "no spaces"})
            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["query", "category", 0]
    finally:
        api.stop()
