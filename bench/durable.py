"""Durable vs in-memory WriteReadings throughput, and recovery time, on a real ingestor subprocess.

    python -m bench.durable [--batches 300] [--batch-size 10000] [--concurrency 8]

The data directory must be on a disk: on tmpfs an fsync costs nothing and the figure would lie, so the
script refuses one (the default directory is under build/ in the repository). Results are printed and
written to bench/results/durable.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from bench.check import target
from devtools.processes import ROOT, ServerProcess, start_ingestor_process
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

RECOVERED = re.compile(r"recovered (\d+) readings .* in ([0-9.]+) s")
CAPACITY = 1_000_000


def filesystem_of(path: Path) -> str:
    """The type of the filesystem ``path`` lives on, from /proc/self/mounts (longest mount point)."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, mount_point, fs_type, *_ = line.split()
            mount_point = mount_point.replace("\\040", " ")
            inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best):
                best, kind = mount_point, fs_type
    return kind


def batches(count: int, size: int, with_ids: bool) -> list[pb.WriteReadingsRequest]:
    rng = np.random.default_rng(1)
    requests = []
    for i in range(count):
        timestamps = 1_705_744_800_000_000_000 + (i * size + np.arange(size, dtype="<i8")) * 1000
        requests.append(
            pb.WriteReadingsRequest(
                columns=pb.ReadingColumns(
                    timestamps_ns=timestamps.tobytes(),
                    values=np.round(rng.normal(50, 5, size), 2).astype("<f8").tobytes(),
                    category_codes=rng.integers(0, 3, size, dtype="<u2").tobytes(),
                ),
                column_categories=["A", "B", "C"],
                batch_id=f"bench-{i}" if with_ids else "",
            )
        )
    return requests


async def write_all(address: str, requests: list[pb.WriteReadingsRequest], concurrency: int) -> float:
    """Send every request, ``concurrency`` at a time; return the seconds it took."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        await stub.WriteReadings(pb.WriteReadingsRequest(), timeout=10)  # connect outside the timing
        pending = iter(requests)

        async def worker() -> None:
            for request in pending:
                response = await stub.WriteReadings(request, timeout=60)
                assert response.accepted == len(request.columns.values) // 8

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def measure(process: ServerProcess, requests: list[pb.WriteReadingsRequest], concurrency: int) -> dict[str, float]:
    seconds = asyncio.run(write_all(process.address, requests, concurrency))
    readings = sum(len(request.columns.values) // 8 for request in requests)
    return {"readings": readings, "seconds": round(seconds, 3), "readings_per_s": round(readings / seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=300, help="batches written per mode (default 300)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="readings per batch (default 10000)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--data-dir", type=Path, help="where the durable mode writes (default: under build/)")
    args = parser.parse_args()

    parent = args.data_dir or ROOT / "build"
    parent.mkdir(parents=True, exist_ok=True)
    filesystem = filesystem_of(parent)
    if filesystem in {"tmpfs", "ramfs"}:
        print(f"{parent} is on {filesystem}: fsync would cost nothing there; pass --data-dir on a disk")
        return 2
    data_dir = Path(tempfile.mkdtemp(prefix="durable-bench-", dir=parent))
    requests = batches(args.batches, args.batch_size, with_ids=True)
    results: dict[str, object] = {
        "batch_size": args.batch_size,
        "batches": args.batches,
        "concurrency": args.concurrency,
        "filesystem": filesystem,
        "cpus": os.cpu_count(),
    }
    try:
        with start_ingestor_process(capacity=CAPACITY) as memory:
            results["in_memory"] = measure(memory, requests, args.concurrency)

        durable = start_ingestor_process(capacity=CAPACITY, data_dir=data_dir)
        try:
            results["durable"] = measure(durable, requests, args.concurrency)
        finally:
            durable.stop(signal.SIGKILL)  # a crash: recovery below also replays the write-ahead log
        results["data_dir_bytes"] = sum(path.stat().st_size for path in data_dir.iterdir())

        started = time.perf_counter()
        recovering = start_ingestor_process(capacity=CAPACITY, data_dir=data_dir, timeout=120)
        to_listening = time.perf_counter() - started
        recovering.stop()
        match = next(m for line in recovering.output if (m := RECOVERED.search(line)))
        results["recovery"] = {
            "readings": int(match.group(1)),
            "seconds": float(match.group(2)),
            "process_start_to_listening_s": round(to_listening, 3),
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    out = ROOT / "bench" / "results" / "durable.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    memory_rate = results["in_memory"]["readings_per_s"]  # type: ignore[index]
    durable_rate = results["durable"]["readings_per_s"]  # type: ignore[index]
    recovery = results["recovery"]  # type: ignore[assignment]
    print(
        f"WriteReadings, {args.batches} batches of {args.batch_size}, {args.concurrency} in flight, "
        f"data dir on {filesystem}"
    )
    print(f"  in-memory  {memory_rate:>12,} readings/s")
    writes_target, recovery_target = target("durable-writes"), target("recovery")
    print(
        f"  durable    {durable_rate:>12,} readings/s  (fsync'd before each acknowledgement; "
        f"target {writes_target.limit:,})"
    )
    print(
        f"recovery of {recovery['readings']:,} readings: {recovery['seconds']:.3f} s in the ingestor "  # type: ignore[index]
        f"(target {recovery_target.comparison} {recovery_target.limit:g} s); "
        f"{recovery['process_start_to_listening_s']:.3f} s from process start to listening"  # type: ignore[index]
    )
    print(f"data directory after the run: {results['data_dir_bytes']:,} bytes; results in {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
