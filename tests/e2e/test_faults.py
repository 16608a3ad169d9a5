"""The function when its ingestor dies, comes back, or answers slowly; shutdowns on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import httpx
import numpy as np
import pytest

from devtools.processes import ServerProcess
from devtools.waiting import wait_until
from functions.channel import connected_channel
from functions.settings import FunctionSettings
from ingestor.store import Columns
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from ingestor.wire import encode_export_response
from tests.support.clients import api_http, http_client
from tests.support.endpoints import DATA_ENDPOINTS, PUSH, STREAM
from tests.support.factories import MakeProcess, MakeStack
from tests.support.inprocess import api_client


class ScriptedServicer(pb_grpc.IngestorServiceServicer):
    """A stand-in ingestor: counts calls per method, can be slow, can fail each method's first call."""

    def __init__(self, delay_s: float = 0.0, fail_first_with: grpc.StatusCode | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self._delay_s = delay_s
        self._fail_first_with = fail_first_with
        self.released = threading.Event()
        self._lock = threading.Lock()

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls[method] += 1
            first = self.calls[method] == 1
        if first and self._fail_first_with is not None:
            context.abort(self._fail_first_with, "scripted failure")
        self.released.wait(self._delay_s)

    def StartIngestion(self, request: pb.StartIngestionRequest, context: grpc.ServicerContext) -> object:
        self._enter("StartIngestion", context)
        return pb.StartIngestionResponse()

    def StopIngestion(self, request: pb.StopIngestionRequest, context: grpc.ServicerContext) -> object:
        self._enter("StopIngestion", context)
        return pb.StopIngestionResponse()

    def GetStatus(self, request: pb.GetStatusRequest, context: grpc.ServicerContext) -> object:
        self._enter("GetStatus", context)
        return pb.GetStatusResponse(capacity=7, rate_hz=1.0)

    def ExportReadings(self, request: pb.ExportReadingsRequest, context: grpc.ServicerContext) -> Iterator[object]:
        self._enter("ExportReadings", context)
        return iter(())

    def WriteReadings(self, request: pb.WriteReadingsRequest, context: grpc.ServicerContext) -> object:
        self._enter("WriteReadings", context)
        return pb.WriteReadingsResponse(accepted=len(request.readings) + len(request.columns.values) // 8)

    def WatchReadings(self, request: pb.WatchReadingsRequest, context: grpc.ServicerContext) -> Iterator[object]:
        self._enter("WatchReadings", context)
        return iter(())


@contextlib.contextmanager
def serving(handler: ScriptedServicer | grpc.GenericRpcHandler) -> Iterator[str]:
    """Serve a stand-in ingestor on a free loopback port and yield its address; at the end, release
    the calls it holds and stop it."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    if isinstance(handler, ScriptedServicer):
        pb_grpc.add_IngestorServiceServicer_to_server(handler, server)
    else:
        server.add_generic_rpc_handlers((handler,))
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        yield address
    finally:
        if isinstance(handler, ScriptedServicer):
            handler.released.set()
        server.stop(0)


def columns_only_ingestor(columns: Columns, names: list[str]) -> grpc.GenericRpcHandler:
    """An ingestor of an older version: ExportReadings alone, answering any request with these
    columns in one message (it ignores fields it does not know, such as ``format``)."""

    def export(request: pb.ExportReadingsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield encode_export_response(columns, names, planned_readings=len(columns))

    methods = {
        "ExportReadings": grpc.unary_stream_rpc_method_handler(
            export, request_deserializer=pb.ExportReadingsRequest.FromString
        )
    }
    return grpc.method_handlers_generic_handler("ingestor.v1.IngestorService", methods)


@contextlib.contextmanager
def frozen(process: ServerProcess) -> Iterator[None]:
    """The process answers nothing (SIGSTOP) until the block ends (SIGCONT)."""
    os.kill(process.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.process.pid, signal.SIGCONT)


def test_ingestor_down_is_503_fast_on_every_data_endpoint_and_back_without_a_restart(
    make_ingestor_process: MakeProcess, make_stack: MakeStack
) -> None:
    ingestor, api = make_stack(capacity=10_000, rate_hz=100)
    with api_http(api) as http:
        assert http.post("/start-ingestion").status_code == 200
        assert ingestor.stop() == 0

        for method, path, body in [*DATA_ENDPOINTS, STREAM] * 2:
            started = time.monotonic()
            response = http.request(method, path, json=body)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, (method, path, response.text)
            # Refused at connect time, or (if the connection's loss was not noticed yet) on the call.
            assert response.json()["detail"] in {
                "the ingestor is unavailable: it refused the connection",
                "the ingestor is unavailable",
            }
            assert elapsed < 1.0, (method, path, elapsed)
            assert http.get("/health").json() == {"status": "healthy"}

        # The same port again: the function, never restarted, reaches the new ingestor at once.
        back = make_ingestor_process(port=ingestor.port, capacity=10_000, rate_hz=100)
        status = http.get("/status")
        assert status.status_code == 200
        assert status.json()["running"] is False  # a new ingestor, with an empty buffer
        assert status.json()["total_ingested"] == 0
        for method, path, body in DATA_ENDPOINTS:
            response = http.request(method, path, json=body)
            assert response.status_code == (202 if path == "/readings" else 200), (method, path, response.text)
        assert http.get("/raw-data", params={"category": "A", "since": "2024-01-20T00:00:00Z"}).json()[0] == {
            "timestamp": "2024-01-20T10:00:00.000000Z",
            "value": 1.5,
            "category": "A",
        }
    assert back.stop() == 0


class Listener:
    """A TCP listener on 127.0.0.1 that never speaks HTTP/2: it holds each connection silently,
    or closes it as soon as it is accepted. ``delay_s`` > 0 instead relays each connection to
    ``target`` after that long, like a slow network before the HTTP/2 handshake."""

    def __init__(self, behaviour: str, target: str = "", delay_s: float = 0.0) -> None:
        self._behaviour = behaviour
        self._target = target
        self._delay_s = delay_s
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._socket.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted += 1
            if self._behaviour == "silent":
                self._held.append(connection)
            elif self._behaviour == "close":
                connection.close()
            else:
                threading.Thread(target=self._relay, args=(connection,), daemon=True).start()

    def _relay(self, connection: socket.socket) -> None:
        time.sleep(self._delay_s)
        host, port = self._target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        self._held += [connection, upstream]

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        threading.Thread(target=pump, args=(upstream, connection), daemon=True).start()
        pump(connection, upstream)

    def close(self) -> None:
        self._socket.close()
        for connection in self._held:
            connection.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


CONNECT_TIMEOUT_S = 0.5
MARGIN_S = 0.4


@pytest.mark.parametrize("behaviour", ["silent", "close"])
def test_an_ingestor_that_never_speaks_http2_is_503_within_the_connect_timeout(
    behaviour: str, make_api_process: MakeProcess
) -> None:
    with Listener(behaviour) as listener:
        # The call deadline is far beyond the connect timeout: only the connect timeout may answer.
        api = make_api_process(
            listener.address, INGESTOR_CONNECT_TIMEOUT_S=str(CONNECT_TIMEOUT_S), INGESTOR_TIMEOUT_S="30"
        )
        with api_http(api, timeout=30) as http:
            for method, path, body in [*DATA_ENDPOINTS, STREAM]:
                started = time.monotonic()
                response = http.request(method, path, json=body)
                elapsed = time.monotonic() - started
                assert response.status_code == 503, (method, path, response.text)
                assert response.json()["detail"] == (
                    f"the ingestor did not accept a connection within {CONNECT_TIMEOUT_S:g} s"
                    if behaviour == "silent"
                    else "the ingestor is unavailable: it refused the connection"
                ), (method, path)
                assert elapsed < CONNECT_TIMEOUT_S + MARGIN_S, (method, path, elapsed)
                if behaviour == "silent":
                    assert elapsed >= CONNECT_TIMEOUT_S, (method, path, elapsed)  # it waited that long
                health = http.get("/health")
                assert (health.status_code, health.json()) == (200, {"status": "healthy"})
        assert listener.accepted >= 1  # the connections were made: it is the handshake that never came
        assert api.stop() == 0


def test_a_handshake_slower_than_grpcs_backoff_but_within_the_connect_timeout_connects(
    make_ingestor_process: MakeProcess, make_api_process: MakeProcess
) -> None:
    """A connection whose HTTP/2 handshake takes 0.3 s is waited for: the connect timeout is 0.5 s."""
    ingestor = make_ingestor_process(capacity=100)
    with Listener("relay", target=ingestor.address, delay_s=0.3) as slow:
        api = make_api_process(slow.address, INGESTOR_CONNECT_TIMEOUT_S=str(CONNECT_TIMEOUT_S))
        with api_http(api, timeout=30) as http:
            started = time.monotonic()
            status = http.get("/status")
            assert (status.status_code, status.json()["capacity"]) == (200, 100), status.text
            assert 0.3 <= time.monotonic() - started < CONNECT_TIMEOUT_S + MARGIN_S
            assert http.post("/readings", json=PUSH).status_code == 202
            assert http.get("/status").json()["total_ingested"] == 1
        assert api.stop() == 0
    assert ingestor.stop() == 0


@pytest.mark.slow  # waits out a deadline on every endpoint
@pytest.mark.anyio
async def test_a_slow_ingestor_is_a_504_with_a_clear_detail() -> None:
    servicer = ScriptedServicer(delay_s=5.0)
    with serving(servicer) as address:
        async with api_client(ingestor_address=address, ingestor_timeout_s=0.3) as http:
            for method, path, body in [*DATA_ENDPOINTS, STREAM]:
                started = time.monotonic()
                response = await http.request(method, path, json=body)
                assert (response.status_code, response.json()) == (
                    504,
                    {"detail": "the ingestor did not answer in time"},
                ), (method, path)
                assert time.monotonic() - started < 3
            assert (await http.get("/health")).status_code == 200
    # A deadline is not retried: one call per endpoint (raw and processed data all export), and the
    # write in particular was sent once.
    assert servicer.calls == {
        "GetStatus": 1,
        "ExportReadings": 5,
        "WriteReadings": 1,
        "StartIngestion": 2,
        "StopIngestion": 1,
        "WatchReadings": 1,
    }


@pytest.mark.anyio
async def test_a_malformed_export_is_a_502_saying_what_was_wrong() -> None:
    def export(request: pb.ExportReadingsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"\x0a\x05\x0a\x08"  # columns claim five bytes, two follow

    methods = {
        "ExportReadings": grpc.unary_stream_rpc_method_handler(
            export, request_deserializer=pb.ExportReadingsRequest.FromString
        )
    }
    with serving(grpc.method_handlers_generic_handler("ingestor.v1.IngestorService", methods)) as address:
        async with api_client(ingestor_address=address) as http:
            for path in ("/processed-data", "/raw-data", "/raw-data?category=A", "/processed-data?window=1m"):
                response = await http.get(path)
                assert (response.status_code, response.json()) == (
                    502,
                    {
                        "detail": "the ingestor sent a malformed ExportReadings message: "
                        "a field runs past the end of the message"
                    },
                ), path


@pytest.mark.anyio
async def test_reads_retry_once_on_unavailable_and_writes_never_do() -> None:
    servicer = ScriptedServicer(fail_first_with=grpc.StatusCode.UNAVAILABLE)
    with serving(servicer) as address:
        settings = FunctionSettings(ingestor_address=address)
        stub = pb_grpc.IngestorServiceStub(await connected_channel(settings))
        request = pb.WriteReadingsRequest(readings=[pb.Reading(timestamp={"seconds": 1}, value=1.0, category="A")])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.WriteReadings(request, timeout=5)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert servicer.calls["WriteReadings"] == 1  # the failed write was not sent again

        async with api_client(ingestor_address=address) as http:
            status = await http.get("/status")
            assert (status.status_code, status.json()["capacity"]) == (200, 7)
            assert (await http.get("/raw-data")).json() == []
            assert (await http.post("/start-ingestion")).status_code == 200
        # Each read failed once and succeeded on its one retry.
        assert servicer.calls["GetStatus"] == 2
        assert servicer.calls["ExportReadings"] == 2
        assert servicer.calls["StartIngestion"] == 2


@pytest.mark.anyio
async def test_a_push_through_the_api_is_not_retried_on_unavailable() -> None:
    servicer = ScriptedServicer(fail_first_with=grpc.StatusCode.UNAVAILABLE)
    with serving(servicer) as address:
        async with api_client(ingestor_address=address) as http:
            failed = await http.post("/readings", json=PUSH)
            assert (failed.status_code, failed.json()) == (503, {"detail": "the ingestor is unavailable"})
            assert servicer.calls["WriteReadings"] == 1  # the caller decides whether to send it again
            again = await http.post("/readings", json=PUSH)
            assert (again.status_code, again.json()) == (202, {"accepted": 1})
        assert servicer.calls["WriteReadings"] == 2


@pytest.mark.anyio
async def test_a_read_that_fails_twice_is_503_not_retried_forever() -> None:
    class AlwaysUnavailable(ScriptedServicer):
        def _enter(self, method: str, context: grpc.ServicerContext) -> None:
            self.calls[method] += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "still down")

    servicer = AlwaysUnavailable()
    with serving(servicer) as address:
        async with api_client(ingestor_address=address) as http:
            response = await http.get("/status")
            assert (response.status_code, response.json()) == (503, {"detail": "the ingestor is unavailable"})
        assert servicer.calls["GetStatus"] == 2


def test_sigterm_stops_both_processes_within_5_s_while_busy(make_stack: MakeStack) -> None:
    ingestor, api = make_stack(capacity=100_000, rate_hz=10_000)
    with api_http(api) as http:
        assert http.post("/start-ingestion").status_code == 200
        time.sleep(0.3)
        assert http.get("/processed-data").status_code == 200
    for process in (api, ingestor):
        started = time.monotonic()
        assert process.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 5


def _read_events(url: str, into: list[str]) -> None:
    try:
        with http_client(timeout=30) as http, http.stream("GET", url) as response:
            for text in response.iter_text():
                into.append(text)
    except httpx.HTTPError as error:
        into.append(f"<{type(error).__name__}>")


def _stuck_stream(api: ServerProcess) -> socket.socket:
    """A /stream client that reads nothing: a small receive buffer, never read."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", api.port))
    client.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: test\r\n\r\n")
    return client


def _request(method: str, url: str, into: list[object]) -> None:
    try:
        response = httpx.request(method, url, timeout=30)
        into.append((response.status_code, response.json()))
    except httpx.HTTPError as error:
        into.append(f"<{type(error).__name__}>")


def test_sigterm_ends_open_streams_and_answers_a_request_that_outlasts_the_grace(make_stack: MakeStack) -> None:
    # A deadline far beyond the grace: the request is still waiting on the ingestor at shutdown.
    ingestor, api = make_stack(api_env={"INGESTOR_TIMEOUT_S": "60"}, capacity=100_000, rate_hz=100_000)
    base = f"http://{api.address}/api/v1"
    events: list[str] = []
    answers: list[object] = []
    reader = threading.Thread(target=_read_events, args=(f"{base}/stream", events), daemon=True)
    reader.start()
    with _stuck_stream(api):
        assert httpx.post(f"{base}/start-ingestion", timeout=10).status_code == 200
        time.sleep(1.0)  # the reading stream gets readings, the stuck one fills its buffers
        with frozen(ingestor):  # the ingestor answers nothing from now on
            slow = threading.Thread(target=_request, args=("GET", f"{base}/processed-data", answers), daemon=True)
            slow.start()
            time.sleep(0.5)
            started = time.monotonic()
            assert api.stop(signal.SIGTERM) == 0
            elapsed = time.monotonic() - started
            reader.join(timeout=5)
            slow.join(timeout=5)
    assert elapsed < 5
    text = "".join(events)
    assert text.count("data: [") > 1  # it was streaming
    assert text.endswith('event: error\ndata: {"detail":"the server is shutting down"}\n\n')
    # The request still running at the end of the grace (3 s) gets an answer, not a dropped connection.
    assert answers == [(503, {"detail": "the server is shutting down: try again"})]
    assert elapsed >= 3.0


def test_sigterm_lets_a_request_finish_within_the_grace(make_stack: MakeStack) -> None:
    ingestor, api = make_stack(api_env={"INGESTOR_TIMEOUT_S": "60"}, capacity=1000, rate_hz=10)
    answers: list[object] = []
    assert httpx.get(f"http://{api.address}/api/v1/status", timeout=10).status_code == 200  # connected
    with frozen(ingestor):
        slow = threading.Thread(target=_request, args=("GET", f"http://{api.address}/api/v1/status", answers))
        slow.start()
        time.sleep(0.5)
        api.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
    # The ingestor answers 1 s into the grace.
    slow.join(timeout=10)
    # That one SIGTERM ends the function: no second signal (stop() would send one to a process still
    # finishing, and a signal that lands while the interpreter shuts down ends it with -15).
    assert api.process.wait(timeout=10) == 0
    api.stop()
    assert len(answers) == 1
    status, body = answers[0]  # type: ignore[misc]
    assert status == 200
    assert body["total_ingested"] >= 0


def _watch(address: str, request: pb.WatchReadingsRequest, outcome: list[object], read: bool, window: list) -> None:
    """Subscribe; read every message (or none) and note how the stream ended."""
    with grpc.insecure_channel(address, options=window) as channel:
        call = pb_grpc.IngestorServiceStub(channel).WatchReadings(request, timeout=30)
        call.initial_metadata()
        outcome.append("subscribed")
        try:
            if read:
                for _ in call:
                    pass
            else:
                time.sleep(10)
        except grpc.RpcError as error:
            outcome.append((error.code(), error.details()))


def test_sigterm_stops_the_ingestor_within_5_s_with_watch_streams_open(make_ingestor_process: MakeProcess) -> None:
    ingestor = make_ingestor_process(capacity=1_000_000, rate_hz=100_000)
    small_window = [("grpc.http2.bdp_probe", 0)]
    streams = {
        "reads messages": (pb.WatchReadingsRequest(), True, []),
        "reads columns": (pb.WatchReadingsRequest(columnar=True, categories=["A"]), True, []),
        "reads nothing": (pb.WatchReadingsRequest(), False, small_window),
        "reads nothing, buffers much": (pb.WatchReadingsRequest(), False, []),
    }
    outcomes: dict[str, list[object]] = {name: [] for name in streams}
    threads = [
        threading.Thread(target=_watch, args=(ingestor.address, request, outcomes[name], read, window), daemon=True)
        for name, (request, read, window) in streams.items()
    ]
    for thread in threads:
        thread.start()
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        wait_until(lambda: all(outcomes.values()), 10, "not every stream subscribed")
        stub.StartIngestion(pb.StartIngestionRequest())
        time.sleep(1.0)
    started = time.monotonic()
    assert ingestor.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    for name in ("reads messages", "reads columns"):
        assert outcomes[name] == ["subscribed", (grpc.StatusCode.UNAVAILABLE, "the ingestor is shutting down")]


@pytest.mark.anyio
async def test_an_ingestor_without_aggregate_readings_is_answered_from_its_readings() -> None:
    """A function newer than its ingestor: UNIMPLEMENTED for the partials, the readings instead."""
    seconds = np.array([0, 1, 61], np.int64)
    columns = Columns(
        1_705_744_800_000_000_000 + seconds * 1_000_000_000, np.array([1.0, 3.0, 5.0]), np.zeros(3, np.uint8)
    )

    with serving(columns_only_ingestor(columns, ["A"])) as address:
        async with api_client(ingestor_address=address) as http:
            seed = await http.get("/processed-data")
            windows = await http.get("/processed-data", params={"window": "1m", "stats": "sum"})
    assert seed.status_code == windows.status_code == 200
    assert seed.json() == [
        {"category": "A", "avg_value": 3.0, "count": 3, "last_timestamp": "2024-01-20T10:01:01.000000Z"}
    ]
    assert [(row["count"], row["sum"]) for row in windows.json()] == [(2, 4.0), (1, 5.0)]


@pytest.mark.anyio
async def test_an_ingestor_that_sends_columns_for_a_file_export_is_a_clear_502() -> None:
    """A function newer than its ingestor: the format is a field the old one does not know, so it
    answers with columns; the function says so before a byte of the file goes out."""
    columns = Columns(np.array([1_705_744_800_000_000_000], np.int64), np.array([1.0]), np.zeros(1, np.uint8))

    with serving(columns_only_ingestor(columns, ["A"])) as address:
        async with api_client(ingestor_address=address) as http:
            parquet = await http.get("/export", params={"format": "parquet"})
            csv = await http.get("/export", params={"format": "csv"})
            ndjson = await http.get("/export", params={"format": "ndjson"})
    assert parquet.status_code == csv.status_code == 502
    assert "EXPORT_FORMAT_UNSPECIFIED, not as EXPORT_FORMAT_PARQUET" in parquet.json()["detail"]
    assert "EXPORT_FORMAT_UNSPECIFIED, not as EXPORT_FORMAT_CSV" in csv.json()["detail"]
    assert "upgrade it" in parquet.json()["detail"]
    assert ndjson.status_code == 200  # the function still encodes NDJSON and Arrow itself
    assert ndjson.text == '{"timestamp":"2024-01-20T10:00:00.000000Z","value":1,"category":"A"}\n'
