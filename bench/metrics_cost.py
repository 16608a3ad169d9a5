"""What the metrics cost: the same work against a stack with metrics on and one with them off.

Two ingestors (``INGESTOR_METRICS_PORT=0`` and off) and two APIs (``METRICS`` true and false) run
side by side, and the measurements take turns between them, so that a busy machine slows both
alike. Writes are small (100 readings a ``WriteReadings``), the case where the per-call cost of the
interceptor and the histograms weighs most; ``/processed-data`` goes through both processes. Both
``/metrics`` endpoints are scraped between rounds, as Prometheus would.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np

from devtools.processes import ServerProcess, start_api_process, start_ingestor_process
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

SMALL_BATCH = 100
METRICS_LINE = "metrics on http://"


def small_requests(batches: int, start_ns: int = 1_700_000_000_000_000_000) -> list[pb.WriteReadingsRequest]:
    rng = np.random.default_rng(15)
    requests = []
    for batch in range(batches):
        timestamps = start_ns + (np.arange(SMALL_BATCH, dtype=np.int64) + batch * SMALL_BATCH) * 1_000
        requests.append(
            pb.WriteReadingsRequest(
                columns=pb.ReadingColumns(
                    timestamps_ns=timestamps.astype("<i8").tobytes(),
                    values=rng.normal(50, 10, SMALL_BATCH).astype("<f8").tobytes(),
                    category_codes=rng.integers(0, 3, SMALL_BATCH).astype("<u2").tobytes(),
                ),
                column_categories=["A", "B", "C"],
            )
        )
    return requests


def _metrics_url(ingestor: ServerProcess) -> str:
    line = next(line for line in ingestor.output if METRICS_LINE in line)
    start = line.index(METRICS_LINE)
    return line[start + len("metrics on ") :].split('"')[0].split()[0]


def _write_rate(stub: pb_grpc.IngestorServiceStub, requests: list[pb.WriteReadingsRequest]) -> float:
    start = time.perf_counter()
    for request in requests:
        stub.WriteReadings(request, timeout=60)
    return len(requests) * SMALL_BATCH / (time.perf_counter() - start)


def _seconds(get: Callable[[str], httpx.Response], path: str) -> float:
    start = time.perf_counter()
    get(path).raise_for_status()
    return time.perf_counter() - start


def metrics_cost(rounds: int = 7, batches: int = 1500, capacity: int = 1_000_000, repeats: int = 31) -> dict[str, Any]:
    """Median write rate and /processed-data time with metrics on and off, and what on costs (a ratio - 1)."""
    requests = small_requests(batches)
    started: list[ServerProcess] = []
    try:
        on_ingestor = start_ingestor_process(capacity=capacity, metrics_port=0)
        started.append(on_ingestor)
        off_ingestor = start_ingestor_process(capacity=capacity)
        started.append(off_ingestor)
        on_api = start_api_process(on_ingestor.address, INGESTOR_TIMEOUT_S="60")
        started.append(on_api)
        off_api = start_api_process(off_ingestor.address, INGESTOR_TIMEOUT_S="60", METRICS="false")
        started.append(off_api)
        scrapes = [_metrics_url(on_ingestor), f"http://{on_api.address}/metrics"]
        writes: dict[str, list[float]] = {"on": [], "off": []}
        processed: dict[str, list[float]] = {"on": [], "off": []}
        with (
            grpc.insecure_channel(on_ingestor.address) as on_channel,
            grpc.insecure_channel(off_ingestor.address) as off_channel,
            httpx.Client(base_url=f"http://{on_api.address}/api/v1", timeout=120) as on_http,
            httpx.Client(base_url=f"http://{off_api.address}/api/v1", timeout=120) as off_http,
            httpx.Client(timeout=30) as scraper,
        ):
            stubs = {"on": pb_grpc.IngestorServiceStub(on_channel), "off": pb_grpc.IngestorServiceStub(off_channel)}
            https = {"on": on_http, "off": off_http}
            for stub in stubs.values():
                _write_rate(stub, requests[:100])  # warm-up
            for round_ in range(rounds):
                order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
                for side in order:
                    writes[side].append(_write_rate(stubs[side], requests))
                for url in scrapes:
                    scraper.get(url).raise_for_status()
            for http in https.values():
                http.get("/processed-data").raise_for_status()  # warm-up
            for repeat in range(repeats):
                for side in ("on", "off") if repeat % 2 == 0 else ("off", "on"):
                    processed[side].append(_seconds(https[side].get, "/processed-data"))
    finally:
        for process in reversed(started):
            process.stop()
    write_on, write_off = statistics.median(writes["on"]), statistics.median(writes["off"])
    processed_on, processed_off = statistics.median(processed["on"]), statistics.median(processed["off"])
    return {
        "metrics_write_on_per_s": write_on,
        "metrics_write_off_per_s": write_off,
        "metrics_write_cost": write_off / write_on - 1,
        "metrics_processed_on_ms": processed_on * 1e3,
        "metrics_processed_off_ms": processed_off * 1e3,
        "metrics_processed_cost": processed_on / processed_off - 1,
    }


if __name__ == "__main__":
    for key, value in metrics_cost().items():
        print(f"{key}: {value:,.4f}")
