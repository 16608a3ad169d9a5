"""`make run`'s launcher: both processes come up together and go down together on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys

import httpx
import pytest

from devtools.processes import start_server_process
from devtools.waiting import wait_until

# Starts the launcher and both its processes.
pytestmark = pytest.mark.slow

READY = re.compile(r"API on http://127\.0\.0\.1:(\d+)/api/v1 .* ingestor on 127\.0\.0\.1:(\d+)")


def test_run_local_starts_both_and_ctrl_c_stops_both() -> None:
    env = {"INGESTOR_PORT": "0", "API_PORT": "0", "INGESTOR_RATE_HZ": "100", "INGESTOR_METRICS_PORT": "0"}
    # On the way out, whatever happened, SIGTERM to the launcher stops both as Ctrl-C does.
    with start_server_process(
        [sys.executable, "-m", "scripts.run_local"], READY, env, timeout=60, new_session=True
    ) as launcher:
        ready = READY.search("".join(launcher.output))
        assert ready is not None
        api_port, ingestor_port = int(ready.group(1)), int(ready.group(2))
        base = f"http://127.0.0.1:{api_port}/api/v1"
        assert httpx.get(f"{base}/status").json()["running"] is False
        assert httpx.post(f"{base}/start-ingestion").json() == {"message": "Data ingestion started"}
        wait_until(lambda: httpx.get(f"{base}/status").json()["total_ingested"] > 0, 10, "nothing was generated")
        # Ctrl-C in a terminal reaches the whole process group.
        os.killpg(launcher.process.pid, signal.SIGINT)
        assert launcher.process.wait(timeout=15) == 0
        for port in (ingestor_port, api_port):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
