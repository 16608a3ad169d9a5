"""``make bench`` (history): rollups and the archive, on the real ingestor and API processes.

- ``GET /api/v1/history?window=1h`` over the newest 20 of 30 days of minute rollups in 16
  categories (7,680 objects), median over repeats;
- columnar ``WriteReadings`` with rollups and without (``INGESTOR_ROLLUPS=false``), in turns, the
  first timed until its rollups took in the last reading;
- the generator at 1,000,000 readings/s archiving to ``file://``: whether the archive kept up (no
  reading evicted before it was archived), and the Parquet bytes per reading.

Results go to ``bench/results/history.json``, which ``python -m bench.check`` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np

from bench.run import RESULTS, timed, write_turns
from devtools.processes import start_api_process, start_ingestor_process
from devtools.waiting import wait_until
from functions.timestamps import format_timestamps
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

MINUTE_NS = 60_000_000_000
DAYS, QUERIED_DAYS, CATEGORIES = 30, 20, 16
END_NS = 1_764_547_200 * 1_000_000_000  # 2025-12-01T00:00:00Z


def minute_readings() -> pb.WriteReadingsRequest:
    """One reading a minute in each category for DAYS days: DAYS x 1,440 x 16 minute rollups."""
    minutes = DAYS * 1440
    times = END_NS - (minutes - np.arange(minutes)) * MINUTE_NS
    rng = np.random.default_rng(18)
    return pb.WriteReadingsRequest(
        columns=pb.ReadingColumns(
            timestamps_ns=np.repeat(times, CATEGORIES).astype("<i8").tobytes(),
            values=np.round(rng.normal(50, 10, minutes * CATEGORIES), 2).astype("<f8").tobytes(),
            category_codes=np.tile(np.arange(CATEGORIES), minutes).astype("<u2").tobytes(),
        ),
        column_categories=[f"sensor-{i:02d}" for i in range(CATEGORIES)],
    )


def bench_history_query(repeats: int) -> dict[str, float]:
    ingestor = start_ingestor_process(capacity=1_000_000, max_message_bytes=64 * 1024 * 1024)
    api = None
    try:
        with grpc.insecure_channel(ingestor.address, options=[("grpc.max_send_message_length", -1)]) as channel:
            pb_grpc.IngestorServiceStub(channel).WriteReadings(minute_readings(), timeout=60)
        api = start_api_process(ingestor.address)
        since = str(format_timestamps(np.array([END_NS - QUERIED_DAYS * 86_400 * 1_000_000_000]))[0])
        with httpx.Client(base_url=f"http://{api.address}/api/v1", timeout=30) as http:

            def call() -> None:
                response = http.get("/history", params={"window": "1h", "since": since})
                response.raise_for_status()
                assert len(response.json()) == QUERIED_DAYS * 24 * CATEGORIES

            samples = timed(call, repeats)
        return {"history_1h_20d_ms": statistics.median(samples) * 1e3, "objects": QUERIED_DAYS * 24 * CATEGORIES}
    finally:
        if api is not None:
            api.stop()
        ingestor.stop()


def bench_rollup_upkeep() -> dict[str, float]:
    """Writes into an ingestor with rollups and one without, taking turns; the first timed until its
    rollups took in every reading (GetHistory waits for that)."""

    def rolled_up(stub: pb_grpc.IngestorServiceStub) -> None:
        stub.GetHistory(pb.GetHistoryRequest(bucket_minutes=1440), timeout=30)

    _, without, with_rollups = write_turns({"rollups": "false"}, rolled_up)
    return {
        "write_with_rollups_per_s": statistics.median(with_rollups),
        "write_without_rollups_per_s": statistics.median(without),
    }


def bench_archive(seconds: float, rate_hz: int = 1_000_000) -> dict[str, float]:
    """The generator at ``rate_hz`` with a 1M buffer archiving to a local directory."""
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as root:
        ingestor = start_ingestor_process(
            capacity=1_000_000, rate_hz=rate_hz, archive_url=Path(root).as_uri(), archive_interval_s=5
        )
        try:
            with grpc.insecure_channel(ingestor.address) as channel:
                stub = pb_grpc.IngestorServiceStub(channel)
                stub.StartIngestion(pb.StartIngestionRequest(), timeout=10)
                time.sleep(seconds)
                stub.StopIngestion(pb.StopIngestionRequest(), timeout=10)
                wait_until(
                    lambda: stub.GetStatus(pb.GetStatusRequest(), timeout=10).archive_pending == 0,
                    120,
                    "the archive did not publish what was generated",
                )
                status = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        finally:
            ingestor.stop()
        size = sum(path.stat().st_size for path in Path(root).glob("date=*/*.parquet"))
    return {
        "archive_generated": status.total_ingested,
        "archive_generated_per_s": status.total_ingested / seconds,
        "archive_archived": status.archived,
        "archive_evicted_unarchived": status.evicted_unarchived,
        "archive_bytes_per_reading": size / max(status.archived, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed /history calls (default 15)")
    parser.add_argument(
        "--archive-seconds", type=float, default=20, help="seconds of generation to archive (default 20)"
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_avg": os.getloadavg(),
    }
    results.update(bench_history_query(args.repeats))
    results.update(bench_rollup_upkeep())
    results["rollup_upkeep"] = 1 - results["write_with_rollups_per_s"] / results["write_without_rollups_per_s"]
    results.update(bench_archive(args.archive_seconds))
    results["load_avg_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "history.json").write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        print(f"{key:32} {value:,.3f}" if isinstance(value, float) else f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
