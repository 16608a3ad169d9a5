"""A short `make loadtest` run in the suite: the tool works, no request fails, the accounting holds."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devtools.processes import ROOT

# A load run of both processes.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

ACCOUNTING = re.compile(r"accounting: total_ingested [\d,]+ = buffered [\d,]+ \+ evicted 0: ok")


def load_run(*args: str, timeout: float) -> str:
    """``python -m scripts.loadtest`` with ``args``: what it printed, once it exited 0 with no error."""
    result = subprocess.run(
        [sys.executable, "-m", "scripts.loadtest", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "errors: 0" in output
    assert ACCOUNTING.search(output), output
    return output


def assert_pushes_counted(output: str) -> None:
    """Every pushed reading, by gRPC and by HTTP, was accepted, found in the buffer and counted."""
    for how in ("gRPC", "HTTP"):
        pushed = re.search(
            rf"pushed readings \({how}\): ([\d,]+) accepted, ([\d,]+) found in the buffer, ([\d,]+) counted", output
        )
        assert pushed is not None, output
        assert pushed.group(1) == pushed.group(2) == pushed.group(3) != "0"


def test_a_short_load_run_has_no_errors_and_exact_accounting() -> None:
    output = load_run("--clients", "5", "--duration", "2", "--rate-hz", "2000", timeout=90)
    assert_pushes_counted(output)
    followed = re.search(r'pages followed through Link rel="next": (\d+)', output)
    assert followed is not None, output
    assert int(followed.group(1)) > 0
    for line in (
        "GET /status",
        "GET /raw-data?category=A",
        "GET /raw-data?since&until",
        "GET /processed-data",
        "GET /processed-data?window",
        "POST /readings",
        "gRPC WriteReadings",
    ):
        assert line in output
    assert "ingestor RSS:" in output


def test_a_short_chaos_run_loses_no_acknowledged_reading_and_fails_only_while_the_ingestor_is_down() -> None:
    output = load_run(
        *("--clients", "8", "--duration", "8", "--rate-hz", "2000", "--chaos", "--kills", "3"), timeout=120
    )
    kills = re.findall(
        r"kill \d at +[\d.]+ s: listening again after [\d.]+ s, answering through the function after", output
    )
    assert len(kills) == 3, output
    down = re.search(r"while the ingestor was down: ([\d,]+) requests answered 503 \(or UNAVAILABLE\)", output)
    assert down is not None, output
    assert int(down.group(1).replace(",", "")) > 0, output  # the outages were felt
    assert_pushes_counted(output)
    assert output.count("each acknowledged reading held exactly once: ok") == 2, output
