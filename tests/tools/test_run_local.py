"""`make run`'s launcher: both processes come up together and go down together on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from devtools.processes import ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_run_local_starts_both_and_ctrl_c_stops_both() -> None:
    ingestor_port, api_port = free_port(), free_port()
    env = {**os.environ, "INGESTOR_PORT": str(ingestor_port), "API_PORT": str(api_port), "INGESTOR_RATE_HZ": "100"}
    launcher = subprocess.Popen(
        [sys.executable, "scripts/run_local.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{api_port}/api/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/status", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the API and the ingestor did not come up"
                time.sleep(0.2)
        assert httpx.post(f"{base}/start-ingestion").json() == {"message": "Data ingestion started"}
        time.sleep(0.3)
        assert httpx.get(f"{base}/status").json()["total_ingested"] > 0
        # Ctrl-C in a terminal reaches the whole process group.
        os.killpg(launcher.pid, signal.SIGINT)
        assert launcher.wait(timeout=15) == 0
        for port in (ingestor_port, api_port):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
