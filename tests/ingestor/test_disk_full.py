"""A durable ingestor whose disk fills up (a small tmpfs, filled by the test): writes are refused
with 507 and a clear message, reads keep working, nothing acknowledged is lost, the generator
pauses and says why, and all of it resumes by itself once space is freed. Restarted on the still
full disk, the ingestor starts and serves what it has."""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.processes import ServerProcess
from devtools.waiting import wait_until
from tests.support.clients import api_http
from tests.support.disks import small_tmpfs
from tests.support.factories import MakeProcess, MakeStack

pytestmark = pytest.mark.slow


def fill(disk: Path) -> Path:
    """Write a file until the file system has no byte left; delete it to free the space."""
    ballast = disk / "ballast"
    with ballast.open("wb", buffering=0) as file:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    file.write(b"\0" * size)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    return ballast


def batch(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"timestamp": f"2024-01-20T10:00:00.{i:06d}Z", "value": float(i), "category": "pushed"}
        for i in range(first, first + count)
    ]


def status_once(http: httpx.Client, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The status, if ``condition`` holds for it."""
    status: dict[str, Any] = http.get("/status").json()
    return status if condition(status) else None


def pushed_values(http: httpx.Client) -> list[float]:
    readings = http.get("/raw-data", params={"category": "pushed", "limit": 10_000}).json()
    return [reading["value"] for reading in readings]


def log_lines(process: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in process.output if line.startswith("{")]


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself(
    make_stack: MakeStack, make_ingestor_process: MakeProcess
) -> None:
    with small_tmpfs(4 * 1024 * 1024) as disk:
        ingestor, api = make_stack(data_dir=disk / "data", capacity=100_000, rate_hz=1000)
        with api_http(api, timeout=30) as http:
            acknowledged: list[float] = []
            for i in range(3):
                response = http.post("/readings", json=batch(i * 1000, 1000), headers={"Idempotency-Key": f"k-{i}"})
                assert response.status_code == 202
                acknowledged += [float(v) for v in range(i * 1000, i * 1000 + 1000)]

            ballast = fill(disk)
            # What SQLite had allocated already may still take a batch or two; then the disk is full.
            refused_key = None
            for i in range(3, 60):
                response = http.post("/readings", json=batch(i * 1000, 1000), headers={"Idempotency-Key": f"k-{i}"})
                if response.status_code == 202:
                    acknowledged += [float(v) for v in range(i * 1000, i * 1000 + 1000)]
                    continue
                assert response.status_code == 507
                assert "the data directory is full" in response.json()["detail"]
                refused_key = i
                break
            assert refused_key is not None, "the disk never filled up"
            # From now on every write is refused at once, before it is stored.
            started = time.monotonic()
            later = http.post("/readings", json=batch(90_000, 10), headers={"Idempotency-Key": "k-later"})
            assert (later.status_code, time.monotonic() - started < 1.0) == (507, True)
            assert "the data directory is full" in later.json()["detail"]
            status = http.get("/status").json()
            assert status["disk_full"] is True

            # Reads keep working, and hold everything acknowledged (the batch whose commit found
            # the disk full is in memory too: it is logged once there is room, see below).
            held = pushed_values(http)
            refused_batch = [float(v) for v in range(refused_key * 1000, refused_key * 1000 + 1000)]
            assert held in (acknowledged, acknowledged + refused_batch)
            assert http.get("/processed-data").status_code == 200

            # The generator pauses, says why, and stores nothing meanwhile.
            assert http.post("/start-ingestion", json={"categories": ["gen"]}).status_code == 200
            status = wait_until(
                lambda: status_once(http, lambda s: "generator_held_back" in s), 15, "the generator was not held back"
            )
            assert status["running"] is True
            assert status["generator_held_back"].startswith("the data directory is full")
            before = status["total_ingested"]
            time.sleep(1.0)
            paused = http.get("/status").json()
            assert (paused["total_ingested"], paused["achieved_rate_hz"], paused["rate_hz"]) == (
                before,
                0.0,
                1000.0,
            )

            # Space is freed: writes and the generator resume, with no restart.
            ballast.unlink()
            wait_until(lambda: "disk_full" not in http.get("/status").json(), 15, "the disk stayed full")
            wait_until(
                lambda: http.get("/status").json()["total_ingested"] > before + 100, 15, "the generator did not resume"
            )
            # The write that found the disk full was logged meanwhile: its retry is a replay.
            retry = http.post(
                "/readings", json=batch(refused_key * 1000, 1000), headers={"Idempotency-Key": f"k-{refused_key}"}
            )
            assert (retry.status_code, retry.headers.get("idempotent-replayed")) == (202, "true")
            # One refused before it was stored is stored now, for the first time.
            again = http.post("/readings", json=batch(90_000, 10), headers={"Idempotency-Key": "k-later"})
            assert (again.status_code, again.headers.get("idempotent-replayed")) == (202, None)
            assert http.post("/stop-ingestion").status_code == 200
            acknowledged += refused_batch + [float(v) for v in range(90_000, 90_010)]
            assert pushed_values(http) == acknowledged
            final_total = http.get("/status").json()["total_ingested"]

            # Full again, then a restart on the still full disk: it starts and serves what it has.
            fill(disk)
            assert ingestor.stop() == 0
            first = ingestor
            ingestor = make_ingestor_process(port=ingestor.port, data_dir=disk / "data", capacity=100_000, rate_hz=1000)
            status = http.get("/status").json()
            assert (status["total_ingested"], status["buffered"]) == (final_total, final_total)
            assert pushed_values(http) == acknowledged
            refused = http.post("/readings", json=batch(95_000, 10))
            assert refused.status_code == 507
            assert "the data directory is full" in refused.json()["detail"]
        # Both stop before their disk goes.
        api.stop()
        ingestor.stop()

    lines = log_lines(first)
    full = [line for line in lines if line["message"].startswith("the data directory is full")]
    assert [line["level"] for line in full] == ["WARNING"]  # once, when it filled up
    assert any(line["message"] == "the data directory has room again: writes are accepted" for line in lines)
    paused = [line for line in lines if line["message"].startswith("the generator is held back")]
    assert paused
    assert "the data directory is full" in paused[0]["message"]
    assert paused[0]["level"] == "WARNING"
