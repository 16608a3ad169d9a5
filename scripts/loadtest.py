"""`make loadtest`: a bounded load run against the ingestor and the API, on loopback only.

Starts `python -m ingestor` (generating 10,000 readings/s) and `python -m functions` on free
loopback ports, starts ingestion, runs N concurrent clients for D seconds over the request mix
below, stops ingestion, then checks the accounting (total_ingested = buffered + evicted, every
pushed reading found) and prints requests/s, p50/p99 per request kind, the error count and the
ingestor's resident memory before and after. Exits non-zero on any error or accounting mismatch.

With --chaos the ingestor is durable (a data directory of its own) and killed with SIGKILL at
random moments, then restarted on the same port; pushes are retried with the same key after a 503
(or UNAVAILABLE); the run then checks that every acknowledged reading is held exactly once and
that every failed request was a 503 while the ingestor was down (scripts/chaos.py).

    python -m scripts.loadtest                            # 50 clients, 60 s
    python -m scripts.loadtest --clients 5 --duration 3   # a quick run
    python -m scripts.loadtest --chaos                    # 50 clients, 60 s, 4 kills
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import numpy as np

from devtools.processes import ServerProcess, start_api_process, start_ingestor_process
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from scripts.chaos import RETRY_PAUSE_S, Chaos, Failure, kill_moments
from scripts.pushes import PUSH_BATCH, Ledger, Pusher, check_pushes

HOST = "127.0.0.1"
MAX_DURATION_S = 600
MAX_CLIENTS = 500
BYTES_PER_READING = 18
PAGES_FOLLOWED = 3
# The script's own channel to the ingestor reconnects at once after a restart.
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]

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
    """Failures no outage explains, per call (all of them without --chaos)."""
    ledger: Ledger = field(default_factory=Ledger)
    """What was pushed, and every failed attempt of any call."""
    pages_followed: int = 0


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def http_call(http: httpx.AsyncClient, call: Call, tally: Tally) -> tuple[bool, int, str]:
    """One request of the mix over HTTP, and the pages after it when the call follows them: whether
    all went well, and the last status and body."""
    params = call.params() if callable(call.params) else call.params
    answer = await http.request(call.method, call.path, params=params, json=call.body)
    ok = answer.status_code == call.expected_status
    for _ in range(call.follow_next):
        following = answer.links.get("next", {}).get("url")
        if not ok or following is None:
            break
        answer = await http.get(following)
        ok = answer.status_code == 200
        tally.pages_followed += 1
    return ok, answer.status_code, f"{answer.status_code} {answer.text[:200]}"


async def run_client(
    http: httpx.AsyncClient,
    stub: pb_grpc.IngestorServiceStub,
    tally: Tally,
    rng: random.Random,
    pusher: Pusher,
    stop_at: float,
) -> None:
    weights = [call.weight for call in MIX]
    while time.monotonic() < stop_at:
        call = rng.choices(MIX, weights)[0]
        started = time.perf_counter()
        if call.grpc_push:
            await pusher.over_grpc(stub, call.name)
        elif call.http_push:
            await pusher.over_http(http, call.name)
        else:
            sent_at = time.monotonic()
            try:
                ok, status, problem = await http_call(http, call, tally)
            except httpx.HTTPError as error:
                ok, status, problem = False, 0, repr(error)[:200]
            if not ok:
                tally.ledger.failures.append(Failure(call.name, sent_at, time.monotonic(), status == 503, problem))
                if status == 503:
                    await asyncio.sleep(RETRY_PAUSE_S)
        tally.latencies_s[call.name].append(time.perf_counter() - started)


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
    data_dir = tempfile.TemporaryDirectory(prefix="loadtest-") if args.chaos else None
    # Their logs are dropped: a long run would otherwise keep every line of them in memory.
    settings: dict[str, object] = {"capacity": args.capacity, "rate_hz": args.rate_hz, "lines": "drop"}
    if data_dir is not None:
        settings["data_dir"] = data_dir.name
    first = start_ingestor_process(**settings)
    chaos = Chaos(first, restart=functools.partial(start_ingestor_process, first.port, **settings))
    try:
        api = start_api_process(chaos.ingestor.address, lines="drop")
    except BaseException:
        chaos.ingestor.stop()
        raise
    ingestor_address = chaos.ingestor.address
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
            httpx.AsyncClient(base_url=api_url, timeout=30) as monkeys_http,
            grpc.aio.insecure_channel(ingestor_address, options=CHANNEL_OPTIONS) as channel,
        ):
            stub = pb_grpc.IngestorServiceStub(channel)
            rss_before = rss_bytes(chaos.ingestor.process.pid)
            started = await http.post("/api/v1/start-ingestion")
            assert started.status_code == 200, started.text
            print(
                f"load: {args.clients} clients for {args.duration:g} s, generator at {args.rate_hz:g} readings/s, "
                f"capacity {args.capacity:,} readings, API {api_url}, ingestor {ingestor_address}"
                + (f", durable, killed {args.kills} times" if args.chaos else "")
            )
            tally = Tally()
            began = time.monotonic()
            stop_at = began + args.duration
            rng = random.Random(args.seed)
            kills = chaos.run(
                monkeys_http, began, kill_moments(rng, args.kills if args.chaos else 0, args.duration), stop_at
            )
            await asyncio.gather(
                kills,
                *(
                    run_client(
                        http, stub, tally, random.Random(rng.random()), Pusher(number, tally.ledger, stop_at), stop_at
                    )
                    for number in range(args.clients)
                ),
            )
            elapsed = time.monotonic() - began
            stopped = await http.post("/api/v1/stop-ingestion")
            assert stopped.status_code == 200, stopped.text
            rss_after = rss_bytes(chaos.ingestor.process.pid)

            failures += classify_failures(tally, chaos, args.chaos)
            report(tally, elapsed)
            print(f'pages followed through Link rel="next": {tally.pages_followed}')
            errors = sum(tally.errors.values())
            print(f"errors: {errors}")
            unexplained = [failure for failure in tally.ledger.failures if tally.errors.get(failure.call)]
            for failure in unexplained[:5]:
                print(f"  {failure.call} at {failure.sent_at - began:.2f} s: {failure.problem}")
            if args.chaos:
                chaos.report(began)
                if len(chaos.outages) < args.kills:
                    failures.append(f"{len(chaos.outages)} kills instead of {args.kills}")

            status = (await http.get("/api/v1/status")).json()
            balanced = status["total_ingested"] == status["buffered"] + status["evicted"]
            print(
                f"accounting: total_ingested {status['total_ingested']:,} = buffered {status['buffered']:,} "
                f"+ evicted {status['evicted']:,}: {'ok' if balanced else 'MISMATCH'}"
            )
            if not balanced:
                failures.append("total_ingested != buffered + evicted")
            failures += await check_pushes(http, stub, tally.ledger, evicted=status["evicted"])
            bound = args.capacity * BYTES_PER_READING
            in_use = status["buffered"] * BYTES_PER_READING
            print(
                f"ingestor RSS: {rss_before / 2**20:.1f} MiB before, {rss_after / 2**20:.1f} MiB after "
                f"(+{(rss_after - rss_before) / 2**20:.1f} MiB; buffer arrays {in_use / 2**20:.1f} "
                f"MiB now, at most {bound / 2**20:.1f} MiB at capacity {args.capacity:,})"
                + (" (the last ingestor's, since its start)" if chaos.outages else "")
            )
    finally:
        failures += stop_both(api, chaos.ingestor)
        if data_dir is not None:
            data_dir.cleanup()
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("ok")
    return 0


def classify_failures(tally: Tally, chaos: Chaos, chaotic: bool) -> list[str]:
    """Count the failures no outage explains as errors; with --chaos, say how many it explains."""
    explained = [failure for failure in tally.ledger.failures if chaos.expected(failure)]
    unexplained = [failure for failure in tally.ledger.failures if not chaos.expected(failure)]
    tally.errors.update(Counter(failure.call for failure in unexplained))
    if chaotic:
        ledger = tally.ledger
        print(
            f"while the ingestor was down: {len(explained):,} requests answered 503 (or UNAVAILABLE), "
            f"none other than those; pushes retried {ledger.retries:,} times, {ledger.replayed:,} of them "
            "answered as replays of a batch stored before the kill"
        )
        statuses = Counter(failure.problem.split(" ", 1)[0] for failure in unexplained)
        if unexplained:
            return [f"{len(unexplained)} failures outside the outages or other than 503: {dict(statuses)}"]
    return [f"{len(unexplained)} errors"] if unexplained else []


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
    parser.add_argument("--seed", type=int, default=6, help="seed of the request mix and the kills (6)")
    parser.add_argument(
        "--chaos", action="store_true", help="a durable ingestor, killed with SIGKILL and restarted (see above)"
    )
    parser.add_argument("--kills", type=bounded(int, 1, 100), default=4, help="with --chaos: how many kills (4)")
    args = parser.parse_args(argv)
    args.clients, args.capacity, args.kills = int(args.clients), int(args.capacity), int(args.kills)
    return asyncio.run(load(args))


if __name__ == "__main__":
    sys.exit(main())
