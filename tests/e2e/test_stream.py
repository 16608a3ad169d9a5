"""GET /api/v1/stream over real HTTP: Server-Sent Events, batching, category filter, gap events, the
bounded backlog, the limit of streams, and streams that end (stuck clients, dropped by the ingestor)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import time

import httpx
import numpy as np
import pytest

from devtools.processes import ServerProcess, ThreadedIngestor
from devtools.waiting import wait_until
from functions.readings import Readings
from functions.sse import Batch, encode_events, event_chunks, sse_events
from tests.support.clients import api_http, http_client
from tests.support.factories import MakeProcess, MakeStack


@pytest.fixture
def live_api(make_stack: MakeStack) -> tuple[ServerProcess, ServerProcess]:
    ingestor, api = make_stack(capacity=1_000_000, rate_hz=200, watch_buffer=2000)
    return ingestor, api


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
        http_client(base, timeout=10) as http,
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
    with http_client(base, timeout=30) as http:
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


def test_a_client_that_goes_away_unsubscribes(ingestor: ThreadedIngestor, make_api_process: MakeProcess) -> None:
    api = make_api_process(ingestor.address)
    hub = ingestor.running.hub
    assert hub is not None
    with api_http(api) as http:
        with http.stream("GET", "/stream") as response:
            assert response.status_code == 200
            assert hub.subscribers == 1
        wait_until(lambda: hub.subscribers == 0, 10, "the stream's subscription outlived its client")
        response = http.get("/stream", params={"category": "no spaces"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "category", 0]


def test_events_hold_at_most_a_bounded_number_of_readings() -> None:
    readings = [{"i": i} for i in range(10)]
    chunks = list(event_chunks([Batch(readings[:3]), Batch(readings[3:], missed=2), Batch(readings[:1])], 4))
    assert [parse_events(chunk.decode()) for chunk in chunks] == [
        [("message", readings[:4])],
        [("message", readings[4:8])],
        [("message", readings[8:])],
        [("gap", {"missed": 2})],
        [("message", readings[:1])],
    ]


def columns_batch(start: int, count: int) -> Batch:
    timestamps = np.arange(start, start + count, dtype=np.int64) * 1_000_000_000
    return Batch(Readings(timestamps, timestamps / 1e9, np.zeros(count, np.uint16), ["A"]))


def test_columns_are_encoded_like_raw_data() -> None:
    (kind, data), *_ = parse_events(encode_events([columns_batch(5, 2)]).decode())
    assert (kind, data) == (
        "message",
        [
            {"timestamp": "1970-01-01T00:00:05.000000Z", "value": 5.0, "category": "A"},
            {"timestamp": "1970-01-01T00:00:06.000000Z", "value": 6.0, "category": "A"},
        ],
    )


def test_a_client_that_stops_reading_stops_the_source_at_the_backlog_bound() -> None:
    async def scenario() -> int:
        pulled = 0

        async def source():  # as fast as it is read, 1,000 readings a batch
            nonlocal pulled
            for i in range(1000):
                pulled += 1000
                yield columns_batch(i * 1000, 1000)

        events = sse_events(source(), flush_interval_s=0, backlog_readings=8192, event_readings=1024)
        await anext(events)  # the first write; then the client reads nothing more
        await asyncio.sleep(0.5)
        await events.aclose()
        return pulled

    # Pulled: the backlog (8,192 and the batch that crossed it), the event being written (1,024 and
    # the batch that crossed it), the batch waiting to be queued. A queue of batches pulls more.
    assert asyncio.run(scenario()) <= 8192 + 1024 + 3 * 1000


def test_a_stop_ends_the_stream_with_an_error_event_after_what_is_queued() -> None:
    async def scenario() -> list[tuple[str, object]]:
        stop = asyncio.Event()

        async def source():
            yield Batch([{"i": 0}])
            await asyncio.sleep(3600)  # a live stream: nothing more for a long time
            yield Batch([{"i": 1}])

        events = sse_events(source(), flush_interval_s=0, stop=stop)
        asyncio.get_running_loop().call_later(0.2, stop.set)
        async with asyncio.timeout(5):
            return parse_events(b"".join([chunk async for chunk in events]).decode())

    assert asyncio.run(scenario()) == [("message", [{"i": 0}]), ("error", {"detail": "the server is shutting down"})]


def open_streams(address: str, count: int) -> list[socket.socket]:
    """Clients that ask for /stream and read nothing (a small receive buffer, so they fill fast)."""
    clients = []
    for _ in range(count):
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", int(address.rsplit(":", 1)[1])))
        client.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: test\r\n\r\n")
        clients.append(client)
    return clients


def status_line(client: socket.socket) -> bytes:
    client.settimeout(10)
    return client.recv(64).split(b"\r\n", 1)[0]


def stream_status(http: httpx.Client) -> int:
    """The status /stream answers with; the stream, if it starts, is closed at once."""
    with http.stream("GET", "/stream") as response:
        return response.status_code


def unless_busy(http: httpx.Client) -> int | None:
    """/stream's status, or None while it answers 503 (no slot free)."""
    status = stream_status(http)
    return None if status == 503 else status


def test_more_streams_than_allowed_are_503_with_retry_after(
    ingestor: ThreadedIngestor, make_api_process: MakeProcess
) -> None:
    api = make_api_process(ingestor.address, STREAM_MAX_CLIENTS="2")
    clients = open_streams(api.address, 2)
    assert [status_line(client) for client in clients] == [b"HTTP/1.1 200 OK"] * 2
    with api_http(api) as http:
        refused = http.get("/stream")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json() == {"detail": "2 streams are open, the most this server serves"}
        clients.pop().close()
        status = wait_until(lambda: unless_busy(http), 10, "no slot came back")
        assert status == 200  # the slot came back when its client left
    for client in clients:
        client.close()


def test_the_ingestor_limit_of_subscribers_is_a_503_with_retry_after_too(make_stack: MakeStack) -> None:
    _, api = make_stack(max_subscribers=1)
    (client,) = open_streams(api.address, 1)
    assert status_line(client) == b"HTTP/1.1 200 OK"
    refused = httpx.get(f"http://{api.address}/api/v1/stream", timeout=10)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert refused.json() == {"detail": "the ingestor serves at most 1 live subscribers: try again later"}
    client.close()


def test_a_client_that_reads_nothing_is_closed_and_its_slot_freed(make_stack: MakeStack) -> None:
    _, api = make_stack(api_env={"STREAM_MAX_CLIENTS": "1", "STREAM_STALL_S": "1"}, capacity=1_000_000, rate_hz=200_000)
    (stuck,) = open_streams(api.address, 1)
    assert status_line(stuck) == b"HTTP/1.1 200 OK"
    with api_http(api) as http:
        assert http.post("/start-ingestion").status_code == 200
        started = time.monotonic()
        status = wait_until(lambda: unless_busy(http), 15, "the stuck stream kept its slot")
        http.post("/stop-ingestion")
    assert status == 200
    assert time.monotonic() - started >= 1.0
    # What the server had sent is still there to read, then the connection is closed.
    with stuck:
        stuck.settimeout(10)
        while stuck.recv(1 << 20):
            pass
    assert any("closed an event stream whose client took nothing for 1 s" in line for line in api.output)


def test_a_stream_the_ingestor_drops_ends_with_an_error_event(make_stack: MakeStack) -> None:
    _, api = make_stack(capacity=1_000_000, rate_hz=300_000, watch_stall_s=1)
    with (
        api_http(api, timeout=30) as http,
        http.stream("GET", "/stream") as response,
    ):
        assert response.status_code == 200
        http.post("/start-ingestion")
        time.sleep(4.0)  # reads nothing: the function stops reading, the ingestor drops it
        http.post("/stop-ingestion")
        text = "".join(response.iter_text())  # ends: the whole stream, then the connection
    events = parse_events(text)
    kind, data = events[-1]
    assert kind == "error"
    assert re.fullmatch(
        r"this stream (took no readings for 1 s|fell \d+ s behind \(the limit is 1 s\)) and ends: .*",
        data["detail"],  # type: ignore[index]
    )
