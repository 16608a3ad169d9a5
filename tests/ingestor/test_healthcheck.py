"""The container's HEALTHCHECK command against a real ingestor: the gRPC health protocol, end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devtools.processes import ROOT, ThreadedIngestor
from ingestor.healthcheck import local_address
from ingestor.settings import IngestorSettings
from tests.support.factories import MakeProcess


def run_healthcheck(port: int, host: str = "0.0.0.0") -> subprocess.CompletedProcess[str]:
    """``python -m ingestor.healthcheck`` with the environment the container gives it."""
    env = {**os.environ, "INGESTOR_HOST": host, "INGESTOR_PORT": str(port)}
    command = [sys.executable, "-m", "ingestor.healthcheck", "--timeout", "5"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_healthy_while_serving_and_unhealthy_once_stopped(make_ingestor_process: MakeProcess) -> None:
    process = make_ingestor_process()
    healthy = run_healthcheck(process.port)
    assert (healthy.returncode, healthy.stdout) == (0, f"127.0.0.1:{process.port}: SERVING\n")
    assert process.stop() == 0
    down = run_healthcheck(process.port)
    assert down.returncode == 1
    assert down.stderr.startswith(f"127.0.0.1:{process.port}: UNAVAILABLE")


@pytest.mark.slow  # runs the healthcheck command
def test_unhealthy_while_shutting_down(ingestor: ThreadedIngestor) -> None:
    assert run_healthcheck(ingestor.running.port, host="127.0.0.1").returncode == 0
    ingestor.call(ingestor.running.health.enter_graceful_shutdown())
    result = run_healthcheck(ingestor.running.port, host="127.0.0.1")
    assert (result.returncode, result.stdout) == (1, f"127.0.0.1:{ingestor.running.port}: NOT_SERVING\n")


@pytest.mark.parametrize(
    ("host", "address"),
    [("0.0.0.0", "127.0.0.1:50051"), ("::", "127.0.0.1:50051"), ("10.0.3.7", "10.0.3.7:50051"), ("::1", "[::1]:50051")],
)
def test_the_address_it_checks(host: str, address: str) -> None:
    assert local_address(IngestorSettings(host=host)) == address


@pytest.mark.slow  # runs the healthcheck command
def test_a_bad_configuration_is_unhealthy() -> None:
    result = run_healthcheck(port=70000)
    assert result.returncode == 1
    assert "invalid configuration" in result.stderr
