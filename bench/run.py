"""``make bench``: the project at 10k to 10M readings, side by side with a naive baseline and the floor.

Starts the real ingestor (``python -m ingestor``), the real API (``python -m functions``) and the
naive baseline (``bench/naive_app.py`` under uvicorn) as separate processes on ports the OS picks,
loads each with the same readings through the columnar ``WriteReadings`` path, and times:

- ``GET /api/v1/processed-data`` over HTTP against the project and the baseline (median, p95);
- the floor: the project's own aggregation over numpy arrays already in this process;
- hopping windows (``window=1m&step=10s``) next to tumbling ones with the same statistics, and whole
  exports as Parquet and CSV (``GET /export``) next to ``ExportReadings`` into numpy;
- ``ExportReadings`` into numpy on the client, ``WriteReadings`` (10k messages a batch, and columnar),
  the generator's highest rate, ingestor RSS per buffered reading, ``/raw-data?limit=10000``, the
  cold import of ``functions.app`` next to its third-party dependencies alone, and what the metrics
  cost (``bench/metrics_cost.py``: small writes and ``/processed-data`` with metrics on and off).

Every figure is a median over repeats after warm-up calls, so a run on a quiet machine gives the real
numbers; the machine's load at the time is recorded with them. Results go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np

from bench.metrics_cost import metrics_cost
from devtools.processes import ROOT, start_api_process, start_ingestor_process, start_uvicorn_process
from functions.client import FILE_CHUNK_SIZE, IngestorClient
from functions.memory import retain_freed_memory
from functions.processing import aggregate_by_category, processed_records
from functions.readings import Readings
from functions.settings import FunctionSettings
from functions.text_columns import iso_timestamps
from functions.timestamps import format_timestamps
from ingestor.blocks import BLOCK_READINGS
from ingestor.csv_text import HEADER as CSV_HEADER
from ingestor.csv_text import csv_chunk
from ingestor.generator import GeneratorControl, ReadingGenerator
from ingestor.parquet_stream import ParquetStream
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
CATEGORIES = ("A", "B", "C")
START_NS = 1_705_744_800_000_000_000  # 2024-01-20T10:00:00Z
WRITE_CHUNK = 65_536
MESSAGE_BATCH = 10_000
MESSAGE_BATCHES = 50
RESULTS = ROOT / "bench" / "results"
# The third-party modules functions/ imports, imported alone for comparison with functions.app.
THIRD_PARTY = (
    "numpy",
    "pandas",
    "grpc",
    "grpc.aio",
    "google.protobuf.timestamp_pb2",
    "pydantic",
    "pydantic_settings",
    "fastapi",
    "fastapi.responses",
    "mangum",
    "orjson",
)


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1e3


def p95_ms(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1e3


def timed(call: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def timed_alternately(calls: Sequence[Callable[[], object]], repeats: int, warmup: int = 2) -> list[list[float]]:
    """Like :func:`timed` for several calls taking turns, so a busy machine slows them alike."""
    for _ in range(warmup):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, times in zip(calls, samples, strict=True):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return samples


def make_readings(n: int) -> Readings:
    """The generator's own readings (1 µs apart), so both sides hold realistic data."""
    generator = ReadingGenerator(1_000_000, CATEGORIES, START_NS, seed=n)
    timestamps, values, which = generator.generate(n)
    return Readings(timestamps, values, which.astype(np.uint16), CATEGORIES)


def column_requests(readings: Readings, chunk: int = WRITE_CHUNK) -> list[pb.WriteReadingsRequest]:
    return [
        pb.WriteReadingsRequest(
            columns=pb.ReadingColumns(
                timestamps_ns=readings.timestamps_ns[i : i + chunk].tobytes(),
                values=readings.values[i : i + chunk].tobytes(),
                category_codes=readings.codes[i : i + chunk].tobytes(),
            ),
            column_categories=readings.categories,
        )
        for i in range(0, len(readings), chunk)
    ]


def message_requests(readings: Readings, batch: int = MESSAGE_BATCH) -> list[pb.WriteReadingsRequest]:
    seconds, nanos = np.divmod(readings.timestamps_ns, 1_000_000_000)
    rows = list(zip(seconds.tolist(), nanos.tolist(), readings.values.tolist(), readings.codes.tolist(), strict=True))
    return [
        pb.WriteReadingsRequest(
            readings=[
                pb.Reading(timestamp={"seconds": s, "nanos": ns}, value=v, category=readings.categories[c])
                for s, ns, v, c in rows[i : i + batch]
            ]
        )
        for i in range(0, len(rows), batch)
    ]


def write_all(stub: pb_grpc.IngestorServiceStub, requests: Sequence[pb.WriteReadingsRequest]) -> float:
    """Send the prebuilt requests one after another; seconds from the first send to the last ack."""
    start = time.perf_counter()
    for request in requests:
        stub.WriteReadings(request, timeout=60)
    return time.perf_counter() - start


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def settled_rss_bytes(pid: int, timeout_s: float = 5.0) -> int:
    """RSS once the process is at rest: the buffers of the last write handed back (the ingestor does
    that shortly after large writes), so that the figure is what the readings cost, not the write."""
    deadline = time.monotonic() + timeout_s
    previous = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        current = rss_bytes(pid)
        if abs(current - previous) < 64 * 1024:
            return current
        previous = current
    return previous


def export_seconds(address: str, n: int, repeats: int) -> list[float]:
    """The function's own client: ExportReadings of the whole buffer into numpy arrays."""

    async def run() -> list[float]:
        client = IngestorClient(FunctionSettings(ingestor_address=address, ingestor_timeout_s=60))
        readings = await client.export_readings()
        assert len(readings) == n, (len(readings), n)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            await client.export_readings()
            samples.append(time.perf_counter() - start)
        return samples

    return asyncio.run(run())


def encode_all(format_name: str, readings: Readings) -> int:
    """The export's bytes as the ingestor encodes them, chunk after chunk (messages of
    FILE_CHUNK_SIZE readings); how many."""
    parts = [readings.slice(at, at + FILE_CHUNK_SIZE) for at in range(0, len(readings), FILE_CHUNK_SIZE)]
    if format_name == "csv":
        return len(CSV_HEADER) + sum(
            len(csv_chunk(part.timestamps_ns, part.values, part.codes, part.categories)) for part in parts
        )
    parquet = ParquetStream()
    size = 0
    for part in parts:
        pieces = parquet.row_group(part.timestamps_ns, part.values, part.codes, part.categories)
        size += sum(len(piece) for piece in pieces)
    return size + len(parquet.finish())


def curl_seconds(url: str, repeats: int) -> list[float]:
    """The seconds curl takes to read ``url``'s whole answer (its own ``time_total``: from before the
    connection to the last byte, not its process's start), after one call to warm up."""
    samples = []
    for _ in range(repeats + 1):
        done = subprocess.run(
            ["curl", "--silent", "--fail", "--output", "/dev/null", "--write-out", "%{time_total}", url],
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(float(done.stdout))
    return samples[1:]


def same_aggregates(project: list[dict[str, Any]], naive: list[dict[str, Any]]) -> bool:
    if [(r["category"], r["count"], r["last_timestamp"]) for r in project] != [
        (r["category"], r["count"], r["last_timestamp"]) for r in naive
    ]:
        return False
    return all(
        abs(a["avg_value"] - b["avg_value"]) <= 1e-9 * abs(b["avg_value"]) for a, b in zip(project, naive, strict=True)
    )


def bench_size(n: int, repeats: int, with_baseline: bool) -> dict[str, Any]:
    print(f"N = {n:,}: generating", flush=True)
    readings = make_readings(n)
    requests = column_requests(readings)
    result: dict[str, Any] = {"n": n}
    with ExitStack() as started:  # every process started here is stopped, the last first
        ingestor = started.enter_context(start_ingestor_process(capacity=n))
        with grpc.insecure_channel(ingestor.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            stub.GetStatus(pb.GetStatusRequest(), timeout=10)
            rss_cold = rss_bytes(ingestor.process.pid)
            # A first chunk pays for one-time set-up (allocator arenas, the write path's first
            # buffers). It is written again with the rest, so the buffer still holds exactly the N
            # readings. Growth per reading is measured from after it; the cold figure is kept too.
            stub.WriteReadings(requests[0], timeout=60)
            rss_warm = settled_rss_bytes(ingestor.process.pid)
            result["write_columns_per_s"] = n / write_all(stub, requests)
            rss_end = settled_rss_bytes(ingestor.process.pid)
            warm_slots = min(n, WRITE_CHUNK)  # ring slots the first chunk already touched
            result["rss_per_reading_bytes"] = (rss_end - rss_warm) / max(1, n - warm_slots)
            result["rss_per_reading_cold_bytes"] = (rss_end - rss_cold) / n
            assert stub.GetStatus(pb.GetStatusRequest()).buffered == n
            result["sealed_blocks"] = wait_for_sealed_blocks(stub, n // BLOCK_READINGS)
        del requests
        api = started.enter_context(start_api_process(ingestor.address, INGESTOR_TIMEOUT_S="60"))
        # The same function with partial aggregates turned off: every query reads the readings.
        raw_api = started.enter_context(
            start_api_process(ingestor.address, INGESTOR_TIMEOUT_S="60", AGGREGATE_PUSHDOWN="false")
        )
        print(f"N = {n:,}: timing the project", flush=True)
        with (
            httpx.Client(base_url=f"http://{api.address}/api/v1", timeout=120) as http,
            httpx.Client(base_url=f"http://{raw_api.address}/api/v1", timeout=120) as raw_http,
        ):
            # The project, the readings path and the floor take turns: their ratios are then fair
            # on a busy machine.
            samples, raw_samples, floor = timed_alternately(
                [
                    lambda: http.get("/processed-data").raise_for_status(),
                    lambda: raw_http.get("/processed-data").raise_for_status(),
                    lambda: processed_records(aggregate_by_category(readings)),
                ],
                repeats,
            )
            result["project_ms"] = {"median": median_ms(samples), "p95": p95_ms(samples)}
            result["pushdown_ms"] = median_ms(samples)  # the project answers from partials by default
            result["raw_path_ms"] = median_ms(raw_samples)
            result["floor_ms"] = median_ms(floor)
            project_body = http.get("/processed-data").json()
            result.update(pushdown_side_by_side(http, raw_http, readings, repeats))
            samples = timed(lambda: http.get("/raw-data", params={"limit": 10_000}).raise_for_status(), repeats)
            result["raw_10k_ms"] = median_ms(samples)
            # Hopping windows next to tumbling ones with the same statistics, taking turns.
            stats = "min,max,std"
            hopping, tumbling = timed_alternately(
                [
                    lambda: http.get("/processed-data", params={"window": "1m", "step": "10s", "stats": stats}),
                    lambda: http.get("/processed-data", params={"window": "1m", "stats": stats}),
                ],
                repeats,
            )
            result["hopping_ms"], result["tumbling_ms"] = median_ms(hopping), median_ms(tumbling)
            # Whole exports as files, read to the end by curl (a C client, as files are downloaded:
            # httpx's own reading of a body costs more than the function's sending it), a few times
            # in a row each, as ExportReadings below; then read by httpx, for comparison. And the same
            # bytes made in advance, streamed through uvicorn in chunks of the same size: the floor
            # of an export through this server, without reading or encoding.
            sizes = {name: len(http.get("/export", params={"format": name}).content) for name in ("parquet", "csv")}
            export_url = f"http://{api.address}/api/v1/export"
            for name in ("parquet", "csv"):
                result[f"{name}_export_ms"] = median_ms(curl_seconds(f"{export_url}?format={name}", repeats))
            parquet, csv = timed_alternately(
                [
                    lambda: http.get("/export", params={"format": "parquet"}).raise_for_status(),
                    lambda: http.get("/export", params={"format": "csv"}).raise_for_status(),
                ],
                max(3, repeats // 3),
                warmup=1,
            )
            result["parquet_export_httpx_ms"], result["csv_export_httpx_ms"] = median_ms(parquet), median_ms(csv)
            floor_app = started.enter_context(start_uvicorn_process("bench.naive_app:app"))
            chunks = {"parquet": max(1, -(-n // FILE_CHUNK_SIZE)), "csv": max(1, -(-n // WRITE_CHUNK))}
            for name in ("parquet", "csv"):
                query = f"total={sizes[name]}&chunk={-(-sizes[name] // chunks[name])}"
                result[f"{name}_bytes_ms"] = median_ms(
                    curl_seconds(f"http://{floor_app.address}/bytes?{query}", repeats)
                )
            result["parquet_bytes"], result["csv_bytes"] = sizes["parquet"], sizes["csv"]
        result["csv_timestamps_ms"] = median_ms(timed(lambda: iso_timestamps(readings.timestamps_ns), repeats))
        # The encoding alone, in this process, chunk by chunk as the ingestor does: no gRPC, no HTTP.
        for format_name in ("parquet", "csv"):
            samples = timed(lambda name=format_name: encode_all(name, readings), max(3, repeats // 3), warmup=1)
            result[f"{format_name}_encode_ms"] = median_ms(samples)
        samples = export_seconds(ingestor.address, n, repeats)
        result["export_ms"] = median_ms(samples)
        result["export_per_s"] = n / statistics.median(samples)
        if with_baseline:
            print(f"N = {n:,}: timing the naive baseline", flush=True)
            naive = started.enter_context(start_uvicorn_process("bench.naive_app:app"))
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "readings.npz"
                np.savez(
                    path,
                    timestamps_ns=readings.timestamps_ns,
                    values=readings.values,
                    codes=readings.codes,
                    categories=np.array(CATEGORIES),
                )
                with httpx.Client(base_url=f"http://{naive.address}", timeout=600) as http:
                    http.post("/load", params={"path": str(path)}).raise_for_status()
                    naive_repeats = max(3, repeats // 2) if n < 10_000_000 else 3
                    samples = timed(
                        lambda: http.get("/api/v1/processed-data").raise_for_status(), naive_repeats, warmup=1
                    )
                    result["naive_ms"] = {"median": median_ms(samples), "p95": p95_ms(samples)}
                    result["naive_agrees"] = same_aggregates(project_body, http.get("/api/v1/processed-data").json())
    return result


def wait_for_sealed_blocks(stub: pb_grpc.IngestorServiceStub, blocks: int, timeout_s: float = 60.0) -> int:
    """Wait until the ingestor has sealed ``blocks`` blocks (in its worker thread); how many it has."""
    deadline = time.monotonic() + timeout_s
    while True:
        sealed = stub.GetStatus(pb.GetStatusRequest(), timeout=10).sealed_blocks
        if sealed >= blocks or time.monotonic() > deadline:
            return sealed
        time.sleep(0.05)


PUSHDOWN_QUERIES = {
    "window_stats": {"window": "1m", "stats": "min,max,sum,std"},
    "recent_category": {"category": "A"},  # and since: the last 10 % of the buffer, set below
    "percentiles": {"stats": "p50,p99"},  # not mergeable: both take the readings path
}


def pushdown_side_by_side(
    http: httpx.Client, raw_http: httpx.Client, readings: Readings, repeats: int
) -> dict[str, Any]:
    """The same queries through partials (``http``) and through the readings (``raw_http``), taking
    turns; and whether both answered the same (counts and times equal, values within 1e-9)."""
    since = str(format_timestamps(readings.timestamps_ns[[len(readings) * 9 // 10]])[0])
    figures: dict[str, Any] = {"pushdown_agrees": True}
    for name, params in PUSHDOWN_QUERIES.items():
        params = {**params, "since": since} if name == "recent_category" else params
        pushed, raw = timed_alternately(
            [
                lambda params=params: http.get("/processed-data", params=params).raise_for_status(),
                lambda params=params: raw_http.get("/processed-data", params=params).raise_for_status(),
            ],
            repeats,
        )
        figures[f"{name}_ms"], figures[f"{name}_raw_ms"] = median_ms(pushed), median_ms(raw)
        answers = [client.get("/processed-data", params=params).json() for client in (http, raw_http)]
        figures["pushdown_agrees"] &= same_records(*answers)
    return figures


def same_records(pushed: list[dict[str, Any]], raw: list[dict[str, Any]]) -> bool:
    if len(pushed) != len(raw) or any(list(a) != list(b) for a, b in zip(pushed, raw, strict=True)):
        return False
    for a, b in zip(pushed, raw, strict=True):
        for key, value in b.items():
            if isinstance(value, float) and not (a[key] is not None and abs(a[key] - value) <= 1e-9 * abs(value)):
                return False
            if not isinstance(value, float) and a[key] != value:
                return False
    return True


Stub = pb_grpc.IngestorServiceStub


def write_turns(
    without: dict[str, str], settle: Callable[[Stub], None], n: int = 2_000_000, rounds: int = 5
) -> tuple[list[float], list[float], list[float]]:
    """Columnar WriteReadings of ``n`` readings into an ingestor with its defaults and one with the
    settings ``without``, taking turns (a ring of 1M, so the writes evict as in a steady state):
    readings/s of each until the last acknowledgement, and of the first until ``settle`` returned too."""
    requests = column_requests(make_readings(n))
    with ExitStack() as started:
        stubs = []
        for settings in ({}, without):
            ingestor = started.enter_context(start_ingestor_process(capacity=1_000_000, **settings))
            stubs.append(Stub(started.enter_context(grpc.insecure_channel(ingestor.address))))
        for stub in stubs:
            write_all(stub, requests[:8])  # warm-up
        acked: tuple[list[float], list[float]] = ([], [])
        settled: list[float] = []
        for _ in range(rounds):
            for stub, samples in zip(stubs, acked, strict=True):
                start = time.perf_counter()
                write_all(stub, requests)
                samples.append(n / (time.perf_counter() - start))
                if stub is stubs[0]:
                    settle(stub)
                    settled.append(n / (time.perf_counter() - start))
        return acked[0], acked[1], settled


def bench_write_overhead() -> tuple[float, float, float]:
    """Writes into an ingestor that seals blocks and one that does not: median readings/s of each
    until the last acknowledgement, and of the first until its last block is sealed too."""

    def sealed(stub: Stub) -> None:
        status = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        oldest = status.total_ingested - status.buffered
        wait_for_sealed_blocks(stub, status.total_ingested // BLOCK_READINGS - -(-oldest // BLOCK_READINGS))

    with_partials, without, until_sealed = write_turns({"block_partials": "false"}, sealed)
    return statistics.median(with_partials), statistics.median(without), statistics.median(until_sealed)


def partial_bytes_per_reading(rate_hz: int = 1_000, n: int = 1_000_000) -> float:
    """What sealed blocks' partials take per reading, for readings at ``rate_hz`` in three categories."""
    store = ReadingStore(n)
    generator = ReadingGenerator(rate_hz, CATEGORIES, START_NS, seed=3)
    timestamps, values, which = generator.generate(n)
    store.append(Columns(timestamps, values, store.encode_categories(CATEGORIES)[which]))
    store.seal_pending()
    return store.blocks.nbytes / n


def bench_message_writes() -> float:
    """WriteReadings with 10k Reading messages a request, built beforehand; median readings/s of rounds of 10."""
    readings = make_readings(MESSAGE_BATCH * MESSAGE_BATCHES)
    requests = message_requests(readings)
    with (
        start_ingestor_process(capacity=len(readings)) as ingestor,
        grpc.insecure_channel(ingestor.address) as channel,
    ):
        stub = pb_grpc.IngestorServiceStub(channel)
        write_all(stub, requests[:3])  # warm-up; the buffer just wraps around
        rounds = [requests[i : i + 10] for i in range(0, len(requests), 10)]
        return statistics.median(MESSAGE_BATCH * len(batch) / write_all(stub, batch) for batch in rounds)


def bench_generator_capacity(seconds_of_readings: int = 5, rate_hz: int = 1_000_000) -> float:
    """Readings the generator makes and stores per second of CPU when it falls 1 s behind each tick."""
    clock = [START_NS]
    control = GeneratorControl(ReadingStore(rate_hz), rate_hz, CATEGORIES, clock=lambda: clock[0])
    generator = ReadingGenerator(rate_hz, CATEGORIES, START_NS, seed=1)
    control.emit_due(generator)
    samples = []
    for _ in range(seconds_of_readings):
        clock[0] += 1_000_000_000
        start = time.perf_counter()
        emitted = control.emit_due(generator)
        samples.append(emitted / (time.perf_counter() - start))
    return statistics.median(samples)


def bench_generator_sustained(rate_hz: int = 1_000_000, seconds: float = 3.0) -> float:
    """The real ingestor generating at ``rate_hz``: readings stored per wall-clock second."""
    with (
        start_ingestor_process(capacity=rate_hz, rate_hz=rate_hz) as ingestor,
        grpc.insecure_channel(ingestor.address) as channel,
    ):
        stub = pb_grpc.IngestorServiceStub(channel)
        stub.StartIngestion(pb.StartIngestionRequest(), timeout=10)
        time.sleep(0.5)
        first = stub.GetStatus(pb.GetStatusRequest(), timeout=10).total_ingested
        start = time.perf_counter()
        time.sleep(seconds)
        last = stub.GetStatus(pb.GetStatusRequest(), timeout=10).total_ingested
        return (last - first) / (time.perf_counter() - start)


def import_seconds(repeats: int = 9) -> tuple[float, float, float, float]:
    """Median cold import times in fresh interpreters: of THIRD_PARTY, and of functions.app on top of
    them; and of functions.app alone, with pyarrow installed and as before it was (unimportable).

    Timing deps and app in the same interpreter, one after the other, keeps the comparison fair on a
    busy machine: whatever slows one run slows both parts of it; the runs with and without pyarrow
    take turns. The third-party phase loads pandas as functions/__init__.py does, with pyarrow
    hidden, so that it is the set of modules the function's own cold start loads.
    """
    split = (
        "import sys, time; start = time.perf_counter()\nsys.modules['pyarrow'] = None\n"
        + "".join(f"import {module}\n" for module in THIRD_PARTY)
        + "del sys.modules['pyarrow']\nmiddle = time.perf_counter()\nimport functions.app\n"
        + "print(middle - start, time.perf_counter() - middle)"
    )
    alone = (
        "import sys, time\n{prelude}start = time.perf_counter()\nimport functions.app\n"
        "assert sys.modules.get('pyarrow') is None, 'pyarrow loaded at import'\n"
        "print(time.perf_counter() - start)"
    )

    def run(code: str) -> list[float]:
        done = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
        return [float(word) for word in done.stdout.split()]

    run(split)  # bytecode caches written, files in the page cache
    splits, installed, before = [], [], []
    for _ in range(repeats):
        splits.append(run(split))
        installed.append(run(alone.format(prelude=""))[0])
        before.append(run(alone.format(prelude="sys.modules['pyarrow'] = None\n"))[0])
    return (
        statistics.median(deps for deps, _ in splits),
        statistics.median(app for _, app in splits),
        statistics.median(installed),
        statistics.median(before),
    )


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| N | project median / p95 ms | naive median / p95 ms | floor ms | naive/project | project/floor "
        "| export ms (M readings/s) | columnar write M/s | raw-data 10k ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["sizes"]:
        project, naive = row["project_ms"], row.get("naive_ms")
        naive_text = f"{fmt_ms(naive['median'])} / {fmt_ms(naive['p95'])}" if naive else "—"
        speedup = f"{naive['median'] / project['median']:.1f}x" if naive else "—"
        lines.append(
            f"| {row['n']:,} | {fmt_ms(project['median'])} / {fmt_ms(project['p95'])} | {naive_text} "
            f"| {fmt_ms(row['floor_ms'])} | {speedup} | {project['median'] / row['floor_ms']:.2f} "
            f"| {fmt_ms(row['export_ms'])} ({row['export_per_s'] / 1e6:.0f}) | {row['write_columns_per_s'] / 1e6:.1f} "
            f"| {fmt_ms(row['raw_10k_ms'])} |"
        )
    lines += [
        "",
        "| N | hopping 1m/10s / tumbling 1m ms (ratio) | export as parquet / csv (read by curl) / ExportReadings ms "
        "| parquet, csv over export | read by httpx: parquet / csv ms "
        "| encoding alone: parquet / csv / its ISO timestamps ms "
        "| their bytes alone through uvicorn: parquet / csv ms (over export) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["sizes"]:
        if "hopping_ms" not in row:
            continue
        lines.append(
            f"| {row['n']:,} | {fmt_ms(row['hopping_ms'])} / {fmt_ms(row['tumbling_ms'])} "
            f"({row['hopping_ms'] / row['tumbling_ms']:.2f}) | {fmt_ms(row['parquet_export_ms'])} / "
            f"{fmt_ms(row['csv_export_ms'])} / {fmt_ms(row['export_ms'])} "
            f"| {row['parquet_export_ms'] / row['export_ms']:.1f}x, {row['csv_export_ms'] / row['export_ms']:.1f}x "
            f"| {fmt_ms(row['parquet_export_httpx_ms'])} / {fmt_ms(row['csv_export_httpx_ms'])} "
            f"| {fmt_ms(row['parquet_encode_ms'])} / {fmt_ms(row['csv_encode_ms'])} "
            f"/ {fmt_ms(row['csv_timestamps_ms'])} "
            f"| {_bytes_floor(row)} |"
        )
    lines += [
        "",
        "| N | /processed-data: partials / readings / floor ms (partials over floor) "
        "| window=1m&stats=min,max,sum,std: partials / readings ms "
        "| category=A&since=last 10 %: partials / readings ms "
        "| stats=p50,p99: partials on / off ms | sealed blocks |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["sizes"]:
        if "pushdown_ms" not in row:
            continue
        lines.append(
            f"| {row['n']:,} | {fmt_ms(row['pushdown_ms'])} / {fmt_ms(row['raw_path_ms'])} / {fmt_ms(row['floor_ms'])} "
            f"({row['pushdown_ms'] / row['floor_ms']:.2f}) "
            f"| {fmt_ms(row['window_stats_ms'])} / {fmt_ms(row['window_stats_raw_ms'])} "
            f"| {fmt_ms(row['recent_category_ms'])} / {fmt_ms(row['recent_category_raw_ms'])} "
            f"| {fmt_ms(row['percentiles_ms'])} / {fmt_ms(row['percentiles_raw_ms'])} | {row['sealed_blocks']} |"
        )
    largest = results["sizes"][-1]
    single = results["single"]
    lines += [
        "",
        "| other figure | value |",
        "|---|---:|",
        f"| WriteReadings, 10k Reading messages a batch | {single['write_messages_per_s'] / 1e3:,.0f}k readings/s |",
        f"| generator capacity (in-process, 1 s of readings a tick) | {single['generator_capacity_per_s'] / 1e6:.1f}M "
        "readings/s |",
        f"| generator at 1M Hz in the real ingestor | {single['generator_sustained_per_s'] / 1e6:.2f}M readings/s |",
        f"| ingestor RSS growth per buffered reading at N={largest['n']:,} "
        f"| {largest['rss_per_reading_bytes']:.2f} B |",
        "| columnar WriteReadings (2M into a ring of 1M): sealing blocks / not / sealing, until sealed "
        f"| {single.get('write_columns_partials_per_s', 0) / 1e6:.1f}M / "
        f"{single.get('write_columns_no_partials_per_s', 0) / 1e6:.1f}M / "
        f"{single.get('write_columns_until_sealed_per_s', 0) / 1e6:.1f}M readings/s |",
        f"| partials of sealed blocks at 1,000 readings/s | {single.get('partial_bytes_per_reading_1khz', 0):.2f} B "
        "a reading |",
        f"| cold import: functions.app / third-party deps alone | {fmt_ms(single['import_app_ms'])} / "
        f"{fmt_ms(single['import_deps_ms'])} ms (+{single['import_overhead'] * 100:.0f}%) |",
        "| cold import of functions.app alone, pyarrow installed / unimportable "
        f"| {fmt_ms(single['import_app_alone_ms'])} / {fmt_ms(single['import_app_without_pyarrow_ms'])} ms "
        f"({single['import_growth_with_pyarrow'] * 100:+.1f}%) |",
    ]
    if "metrics_write_cost" in single:
        lines += [
            f"| WriteReadings of 100 readings, metrics on / off | {single['metrics_write_on_per_s'] / 1e3:,.0f}k / "
            f"{single['metrics_write_off_per_s'] / 1e3:,.0f}k readings/s "
            f"({single['metrics_write_cost'] * 100:+.1f}%) |",
            f"| /processed-data at N=1,000,000, metrics on / off | {fmt_ms(single['metrics_processed_on_ms'])} / "
            f"{fmt_ms(single['metrics_processed_off_ms'])} ms ({single['metrics_processed_cost'] * 100:+.1f}%) |",
        ]
    return "\n".join(lines)


def _bytes_floor(row: dict[str, Any]) -> str:
    if "parquet_bytes_ms" not in row:
        return "—"
    return (
        f"{fmt_ms(row['parquet_bytes_ms'])} ({row['parquet_bytes'] / 1e6:.1f} MB) / {fmt_ms(row['csv_bytes_ms'])} "
        f"({row['csv_bytes'] / 1e6:.1f} MB) ({row['parquet_bytes_ms'] / row['export_ms']:.1f}x, "
        f"{row['csv_bytes_ms'] / row['export_ms']:.1f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip N = 10,000,000")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per figure (default 15)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive baseline")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N", help="buffer sizes to time instead of the four")
    parser.add_argument("--show", type=Path, metavar="JSON", help="print the table of an earlier run and exit")
    args = parser.parse_args(argv)
    if args.show:
        print(table(json.loads(args.show.read_text())))
        return 0
    sizes = args.sizes or [n for n in SIZES if not (args.quick and n > 1_000_000)]
    # The floor and the export are timed in this process: under the allocator setting that the
    # function's own process runs with (functions.app applies it), so that they compare fairly.
    retain_freed_memory()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "repeats": args.repeats,
        "sizes": [],
    }
    for n in sizes:
        repeats = args.repeats if n < 10_000_000 else max(5, args.repeats // 2)
        results["sizes"].append(bench_size(n, repeats, with_baseline=not args.no_baseline))
    print("single figures", flush=True)
    deps_s, own_s, installed_s, before_s = import_seconds()
    with_partials, without_partials, until_sealed = bench_write_overhead()
    results["single"] = {
        "write_columns_partials_per_s": with_partials,
        "write_columns_no_partials_per_s": without_partials,
        "write_columns_until_sealed_per_s": until_sealed,
        "write_messages_per_s": bench_message_writes(),
        "generator_capacity_per_s": bench_generator_capacity(),
        "generator_sustained_per_s": bench_generator_sustained(),
        "partial_bytes_per_reading_1khz": partial_bytes_per_reading(),
        "import_app_ms": (deps_s + own_s) * 1e3,
        "import_deps_ms": deps_s * 1e3,
        "import_overhead": own_s / deps_s,
        "import_app_alone_ms": installed_s * 1e3,
        "import_app_without_pyarrow_ms": before_s * 1e3,
        "import_growth_with_pyarrow": installed_s / before_s - 1,
        **metrics_cost(),
    }
    results["machine"]["load_avg_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for path in (RESULTS / f"bench-{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(results, indent=2))
    print()
    print(table(results))
    print(f"\nload average {results['machine']['load_avg']} -> {results['machine']['load_avg_end']}; JSON in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
