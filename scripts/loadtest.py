"""`make loadtest`: a bounded load run against the ingestor and the API, on loopback only.

Starts `python -m ingestor` (generating 10,000 readings/s) and `python -m functions` on free
loopback ports, starts ingestion, runs N concurrent clients for D seconds over the request mix
below, stops ingestion, then checks the accounting (total_ingested = buffered + evicted, every
pushed reading found) and prints requests/s, p50/p99 per request kind, the error count and the
ingestor's resident memory before and after. Exits non-zero on any error or accounting mismatch.

    python -m scripts.loadtest                            # 50 clients, 60 s
    python -m scripts.loadtest --clients 5 --duration 3   # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import numpy as np

from devtools.processes import ServerProcess, start_api_process, start_ingestor_process
from functions.wire import decode_export
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

HOST = "127.0.0.1"
MAX_DURATION_S = 600
MAX_CLIENTS = 500
BYTES_PER_READING = 18
# Each way of pushing has a category of its own, which the generator never uses, so that the
# pushed readings can be counted afterwards.
PUSH_CATEGORY = "loadtest-push"
HTTP_PUSH_CATEGORY = "loadtest-http-push"
PUSH_BATCH = 10
PAGES_FOLLOWED = 3

Params = dict[str, str | int] | list[tuple[str, str | int]]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def last_seconds(seconds: float, **extra: str | int) -> Callable[[], Params]:
    """Parameters computed at each request: ``since`` some seconds ago, ``until`` now."""

    def params() -> Params:
        now = datetime.now(UTC)
        return {"since": _iso(now - timedelta(seconds=seconds)), "until": _iso(now), **extra}

    return params


@dataclass(frozen=True)
class Call:
    """One kind of request in the mix: over HTTP (method, path, params or a function making them,
    a JSON body), an HTTP push of readings, or a gRPC push."""

    name: str
    weight: int
    method: str = "GET"
    path: str = ""
    params: Params | Callable[[], Params] | None = None
    body: object | None = None
    expected_status: int = 200
    follow_next: int = 0
    """Follow the ``Link: <...>; rel="next"`` header for up to this many more pages."""
    http_push: bool = False
    grpc_push: bool = False


# The request mix. Endpoints added to the API get a row here; /stream never ends, so it is left out.
MIX: list[Call] = [
    Call("GET /health", 10, path="/api/v1/health"),
    Call("GET /status", 20, path="/api/v1/status"),
    Call("GET /raw-data", 10, path="/api/v1/raw-data"),
    Call("GET /raw-data?limit=10", 20, path="/api/v1/raw-data", params={"limit": 10}),
    Call("GET /raw-data?limit=10000", 5, path="/api/v1/raw-data", params={"limit": 10_000}),
    Call("GET /raw-data?category=A", 5, path="/api/v1/raw-data", params={"category": "A", "limit": 100}),
    Call(
        "GET /raw-data?since&until",
        5,
        path="/api/v1/raw-data",
        params=last_seconds(1, limit=500),
    ),
    Call(
        f"GET /raw-data pages x{1 + PAGES_FOLLOWED}",
        5,
        path="/api/v1/raw-data",
        params=[("category", "B"), ("category", "C"), ("limit", 100)],
        follow_next=PAGES_FOLLOWED,
    ),
    Call("GET /processed-data", 2, path="/api/v1/processed-data"),
    Call(
        "GET /processed-data?category",
        2,
        path="/api/v1/processed-data",
        params=last_seconds(5, category="A"),
    ),
    Call(
        "GET /processed-data?window",
        2,
        path="/api/v1/processed-data",
        params=last_seconds(10, window="1s", stats="min,max,std,p99"),
    ),
    Call(f"POST /readings x{PUSH_BATCH}", 10, method="POST", path="/api/v1/readings", http_push=True),
    Call(f"gRPC WriteReadings x{PUSH_BATCH}", 10, grpc_push=True),
]


@dataclass
class Tally:
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    pushed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Readings accepted, per push category."""
    pages_followed: int = 0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def http_call(http: httpx.AsyncClient, call: Call, tally: Tally, rng: random.Random) -> tuple[bool, str]:
    """One request of the mix over HTTP, and the pages after it when the call follows them."""
    params = call.params() if callable(call.params) else call.params
    body = call.body
    if call.http_push:
        now = datetime.now(UTC)
        body = [
            {"timestamp": _iso(now), "value": rng.uniform(-1e6, 1e6), "category": HTTP_PUSH_CATEGORY}
            for _ in range(PUSH_BATCH)
        ]
    answer = await http.request(call.method, call.path, params=params, json=body)
    ok = answer.status_code == (202 if call.http_push else call.expected_status)
    if ok and call.http_push:
        ok = answer.json() == {"accepted": PUSH_BATCH}
        if ok:
            tally.pushed[HTTP_PUSH_CATEGORY] += PUSH_BATCH
    for _ in range(call.follow_next):
        following = answer.links.get("next", {}).get("url")
        if not ok or following is None:
            break
        answer = await http.get(following)
        ok = answer.status_code == 200
        tally.pages_followed += 1
    return ok, f"{answer.status_code} {answer.text[:200]}"


async def grpc_push(
    stub: pb_grpc.IngestorServiceStub, tally: Tally, rng: random.Random, sequence: int
) -> tuple[bool, str]:
    base = rng.getrandbits(40)
    readings = [
        pb.Reading(timestamp={"seconds": 1_705_744_800 + sequence}, value=float(base + i), category=PUSH_CATEGORY)
        for i in range(PUSH_BATCH)
    ]
    response = await stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=10)
    ok = response.accepted == PUSH_BATCH
    if ok:
        tally.pushed[PUSH_CATEGORY] += PUSH_BATCH
    return ok, f"accepted {response.accepted}"


async def run_client(
    http: httpx.AsyncClient,
    stub: pb_grpc.IngestorServiceStub,
    tally: Tally,
    rng: random.Random,
    stop_at: float,
) -> None:
    weights = [call.weight for call in MIX]
    sequence = 0
    while time.monotonic() < stop_at:
        call = rng.choices(MIX, weights)[0]
        started = time.perf_counter()
        try:
            if call.grpc_push:
                sequence += 1
                ok, problem = await grpc_push(stub, tally, rng, sequence)
            else:
                ok, problem = await http_call(http, call, tally, rng)
        except (httpx.HTTPError, grpc.aio.AioRpcError) as error:
            ok, problem = False, repr(error)[:200]
        tally.latencies_s[call.name].append(time.perf_counter() - started)
        if not ok:
            tally.errors[call.name] += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(f"{call.name}: {problem}")


async def count_in_buffer(stub: pb_grpc.IngestorServiceStub, category: str) -> int:
    """Readings of a category in the whole buffer, from a full export over gRPC."""
    exported = decode_export([message async for message in stub.ExportReadings(pb.ExportReadingsRequest(), timeout=60)])
    categories = list(exported.categories)
    if category not in categories:
        return 0
    return int(np.count_nonzero(exported.codes == categories.index(category)))


async def count_through_api(http: httpx.AsyncClient, category: str) -> int:
    """The same count as the API reports it: the category's ``count`` in /processed-data."""
    answer = await http.get("/api/v1/processed-data", params={"category": category})
    answer.raise_for_status()
    return sum(row["count"] for row in answer.json())


def report(tally: Tally, elapsed_s: float) -> None:
    print(f"{'request':<32}{'count':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for call in MIX:
        latencies = np.array(tally.latencies_s.get(call.name, [0.0])) * 1000
        count = len(tally.latencies_s.get(call.name, []))
        print(
            f"{call.name:<32}{count:>9}{count / elapsed_s:>9.1f}{np.percentile(latencies, 50):>9.1f}"
            f"{np.percentile(latencies, 99):>9.1f}{tally.errors.get(call.name, 0):>8}"
        )
    total = sum(len(values) for values in tally.latencies_s.values())
    every = np.concatenate([np.array(values) for values in tally.latencies_s.values()]) * 1000
    print(
        f"{'all':<32}{total:>9}{total / elapsed_s:>9.1f}{np.percentile(every, 50):>9.1f}"
        f"{np.percentile(every, 99):>9.1f}{sum(tally.errors.values()):>8}"
    )


def stop_both(api: ServerProcess, ingestor: ServerProcess) -> list[str]:
    """SIGTERM to the API, then to the ingestor; what went wrong on the way down."""
    failures = []
    for name, process in (("API", api), ("ingestor", ingestor)):
        try:
            code = process.stop(signal.SIGTERM)
        except subprocess.TimeoutExpired:
            code = -signal.SIGKILL
        if code != 0:
            failures.append(f"the {name} exited with {code}")
    return failures


async def load(args: argparse.Namespace) -> int:
    # Their logs are dropped: a long run would otherwise keep every line of them in memory.
    ingestor = start_ingestor_process(capacity=args.capacity, rate_hz=args.rate_hz, lines="drop")
    try:
        api = start_api_process(ingestor.address, lines="drop")
    except BaseException:
        ingestor.stop()
        raise
    ingestor_address = ingestor.address
    api_url = f"http://{api.address}"
    failures: list[str] = []
    try:
        # Drop idle connections before uvicorn does (after 5 s): reusing one the server is closing
        # at that moment fails on the client's side, a race of keep-alive rather than a server error.
        limits = httpx.Limits(
            max_connections=args.clients, max_keepalive_connections=args.clients, keepalive_expiry=2.0
        )
        async with (
            httpx.AsyncClient(base_url=api_url, timeout=30, limits=limits) as http,
            grpc.aio.insecure_channel(ingestor_address) as channel,
        ):
            stub = pb_grpc.IngestorServiceStub(channel)
            rss_before = rss_bytes(ingestor.process.pid)
            started = await http.post("/api/v1/start-ingestion")
            assert started.status_code == 200, started.text
            print(
                f"load: {args.clients} clients for {args.duration:g} s, generator at {args.rate_hz:g} readings/s, "
                f"capacity {args.capacity:,} readings, API {api_url}, ingestor {ingestor_address}"
            )
            tally = Tally()
            began = time.monotonic()
            stop_at = began + args.duration
            rng = random.Random(args.seed)
            await asyncio.gather(
                *(run_client(http, stub, tally, random.Random(rng.random()), stop_at) for _ in range(args.clients))
            )
            elapsed = time.monotonic() - began
            stopped = await http.post("/api/v1/stop-ingestion")
            assert stopped.status_code == 200, stopped.text
            rss_after = rss_bytes(ingestor.process.pid)

            report(tally, elapsed)
            print(f'pages followed through Link rel="next": {tally.pages_followed}')
            errors = sum(tally.errors.values())
            print(f"errors: {errors}")
            for sample in tally.error_samples:
                print(f"  {sample}")
            if errors:
                failures.append(f"{errors} errors")

            status = (await http.get("/api/v1/status")).json()
            balanced = status["total_ingested"] == status["buffered"] + status["evicted"]
            print(
                f"accounting: total_ingested {status['total_ingested']:,} = buffered {status['buffered']:,} "
                f"+ evicted {status['evicted']:,}: {'ok' if balanced else 'MISMATCH'}"
            )
            if not balanced:
                failures.append("total_ingested != buffered + evicted")
            # Exact while nothing was evicted: the default capacity (1,000,000) holds the 600,000
            # readings a 60 s run generates at 10,000/s with room for 40 times the pushes measured.
            for category, how in ((PUSH_CATEGORY, "gRPC"), (HTTP_PUSH_CATEGORY, "HTTP")):
                pushed = tally.pushed.get(category, 0)
                in_buffer = await count_in_buffer(stub, category)
                through_api = await count_through_api(http, category)
                print(
                    f"pushed readings ({how}): {pushed:,} accepted, {in_buffer:,} found in the buffer, "
                    f"{through_api:,} counted by /processed-data?category={category}"
                )
                if status["evicted"] == 0 and not pushed == in_buffer == through_api:
                    failures.append(f"pushed readings ({how}) missing")
            if status["evicted"]:
                print(f"  {status['evicted']:,} readings were evicted: the pushed ones may be among them")
            bound = args.capacity * BYTES_PER_READING
            in_use = status["buffered"] * BYTES_PER_READING
            print(
                f"ingestor RSS: {rss_before / 2**20:.1f} MiB before, {rss_after / 2**20:.1f} MiB after "
                f"(+{(rss_after - rss_before) / 2**20:.1f} MiB; buffer arrays {in_use / 2**20:.1f} "
                f"MiB now, at most {bound / 2**20:.1f} MiB at capacity {args.capacity:,})"
            )
    finally:
        failures += stop_both(api, ingestor)
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("ok")
    return 0


def bounded(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loadtest", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clients", type=bounded(int, 1, MAX_CLIENTS), default=50, help="concurrent clients (50)")
    parser.add_argument("--duration", type=bounded(float, 1, MAX_DURATION_S), default=60, help="seconds (60)")
    parser.add_argument("--rate-hz", type=bounded(float, 1, 1_000_000), default=10_000, help="readings/s (10000)")
    parser.add_argument("--capacity", type=bounded(int, 1, 100_000_000), default=1_000_000, help="buffer (1000000)")
    parser.add_argument("--seed", type=int, default=6, help="seed of the request mix (6)")
    args = parser.parse_args(argv)
    args.clients, args.capacity = int(args.clients), int(args.capacity)
    return asyncio.run(load(args))


if __name__ == "__main__":
    sys.exit(main())
