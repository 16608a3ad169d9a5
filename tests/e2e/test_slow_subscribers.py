"""Many live subscribers that read nothing cost the ingestor and the function a bounded amount of
memory, and the ingestor keeps answering: real processes, memory read from /proc/<pid>/status.

The bound is +300 MB over each process's resident memory before the subscribers came; GetStatus
must answer in under 100 ms throughout (the slowest of calls made every 50 ms).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import grpc
import pytest

from devtools.processes import ROOT, ServerProcess
from devtools.waiting import sample_for, wait_until
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http
from tests.support.factories import MakeProcess, MakeStack

pytestmark = pytest.mark.serial

MEMORY_BOUND = 300 * 1024 * 1024
LATENCY_BOUND_S = 0.1
RATE_HZ = 10_000

# 200 subscribers, each on a connection of its own, none of which reads a message: half with
# gRPC's default, growing receive windows (their client library takes megabytes before it stops),
# half with fixed 64 KiB windows (they stop the ingestor's writes at once). Both forms, with and
# without a category filter.
_SUBSCRIBERS = """
import sys, time, grpc
from ingestor.v1 import ingestor_pb2 as pb, ingestor_pb2_grpc as pb_grpc
address, count = sys.argv[1], int(sys.argv[2])
calls = []
for i in range(count):
    options = [("grpc.http2.bdp_probe", 0)] if i % 2 else []
    channel = grpc.insecure_channel(address, options=options + [("grpc.use_local_subchannel_pool", 1)])
    request = pb.WatchReadingsRequest(columnar=i % 4 >= 2, categories=["A", "B"] if i % 8 >= 4 else [])
    calls.append(pb_grpc.IngestorServiceStub(channel).WatchReadings(request))
for call in calls:
    call.initial_metadata()
print("subscribed", flush=True)
sys.stdin.read()  # until the test closes it
"""


def resident_bytes(process: ServerProcess) -> int:
    with open(f"/proc/{process.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stop_all(*processes: ServerProcess) -> None:
    """SIGTERM each process (all of them, whatever happens to one); each must exit 0."""
    codes: list[int | str] = []
    for process in processes:
        try:
            codes.append(process.stop())
        except subprocess.TimeoutExpired:
            codes.append("killed: it did not stop")
    assert codes == [0] * len(processes)


def watch_for(
    seconds: float, stub: pb_grpc.IngestorServiceStub, processes: list[ServerProcess]
) -> tuple[float, list[int]]:
    """The slowest GetStatus and each process's largest resident memory over ``seconds``."""

    def read() -> tuple[float, list[int]]:
        started = time.monotonic()
        stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        return time.monotonic() - started, [resident_bytes(process) for process in processes]

    samples = sample_for(read, seconds, 0.05)
    return max(took for took, _ in samples), [max(column) for column in zip(*(rss for _, rss in samples), strict=True)]


def settled_resident_bytes(process: ServerProcess, stub: pb_grpc.IngestorServiceStub) -> int:
    """Resident memory once warmed up: a few calls, then a moment at rest."""
    for _ in range(5):
        stub.GetStatus(pb.GetStatusRequest(), timeout=10)
    time.sleep(1.0)
    return resident_bytes(process)


def test_200_watch_subscribers_that_read_nothing(make_ingestor_process: MakeProcess) -> None:
    ingestor = make_ingestor_process(capacity=1_000_000, rate_hz=RATE_HZ)
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        before = settled_resident_bytes(ingestor, stub)
        # Leaving the block closes the subscribers' stdin: they end.
        with subprocess.Popen(
            [sys.executable, "-c", _SUBSCRIBERS, ingestor.address, "200"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as subscribers:
            assert subscribers.stdout is not None
            assert subscribers.stdout.readline() == "subscribed\n"
            stub.StartIngestion(pb.StartIngestionRequest())
            slowest, (peak,) = watch_for(6.0, stub, [ingestor])
            stub.StopIngestion(pb.StopIngestionRequest())
            produced = stub.GetStatus(pb.GetStatusRequest()).total_ingested
    print(f"ingestor +{(peak - before) / 2**20:.0f} MB, GetStatus at most {slowest * 1000:.0f} ms")  # -s shows it
    assert produced >= RATE_HZ * 5  # the generator kept its rate meanwhile
    assert peak - before < MEMORY_BOUND, f"+{(peak - before) / 2**20:.0f} MB"
    assert slowest < LATENCY_BOUND_S, f"GetStatus took {slowest * 1000:.0f} ms"
    stop_all(ingestor)


def open_streams(api: ServerProcess, count: int) -> list[socket.socket]:
    """/stream clients that read nothing, with small receive buffers."""
    clients = []
    for _ in range(count):
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", api.port))
        client.sendall(b"GET /api/v1/stream HTTP/1.1\r\nHost: test\r\n\r\n")
        clients.append(client)
    for client in clients:
        client.settimeout(10)
        assert client.recv(15) == b"HTTP/1.1 200 OK"
    return clients


def test_100_stream_clients_that_read_nothing(make_stack: MakeStack) -> None:
    ingestor, api = make_stack(capacity=1_000_000, rate_hz=RATE_HZ)
    with (
        grpc.insecure_channel(ingestor.address) as channel,
        api_http(api) as http,
    ):
        stub = pb_grpc.IngestorServiceStub(channel)
        assert http.get("/status").status_code == 200
        api_before = settled_resident_bytes(api, stub)
        ingestor_before = resident_bytes(ingestor)
        clients = open_streams(api, 100)  # the function's limit: all of them get a stream
        assert http.post("/start-ingestion").status_code == 200
        slowest, (api_peak, ingestor_peak) = watch_for(8.0, stub, [api, ingestor])
        assert http.post("/stop-ingestion").status_code == 200
        for client in clients:
            client.close()

        def served() -> bool:
            with http.stream("GET", "/stream") as response:
                return response.status_code == 200

        wait_until(served, 10, "the slots did not come back when their clients left")
        time.sleep(1.0)
        api_after = resident_bytes(api)
    print(  # -s shows it
        f"function +{(api_peak - api_before) / 2**20:.0f} MB (+{(api_after - api_before) / 2**20:.0f} MB after), "
        f"ingestor +{(ingestor_peak - ingestor_before) / 2**20:.0f} MB, GetStatus at most {slowest * 1000:.0f} ms"
    )
    for name, before, peak in (("function", api_before, api_peak), ("ingestor", ingestor_before, ingestor_peak)):
        assert peak - before < MEMORY_BOUND, f"{name}: +{(peak - before) / 2**20:.0f} MB"
    assert api_after - api_before < MEMORY_BOUND, f"function after: +{(api_after - api_before) / 2**20:.0f} MB"
    assert slowest < LATENCY_BOUND_S, f"GetStatus took {slowest * 1000:.0f} ms"
    stop_all(api, ingestor)
