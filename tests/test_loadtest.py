"""A short `make loadtest` run in the suite: the tool works, no request fails, the accounting holds."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.harness import ROOT


def test_a_short_load_run_has_no_errors_and_exact_accounting() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/loadtest.py", "--clients", "5", "--duration", "2", "--rate-hz", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "errors: 0" in output
    assert re.search(r"accounting: total_ingested [\d,]+ = buffered [\d,]+ \+ evicted 0: ok", output), output
    pushed = re.search(r"pushed readings: ([\d,]+) accepted, ([\d,]+) found", output)
    assert pushed is not None
    assert pushed.group(1) == pushed.group(2) != "0"
    for line in ("GET /status", "GET /processed-data", "gRPC WriteReadings"):
        assert line in output
    assert "ingestor RSS:" in output
