"""The function's process reuses freed memory instead of faulting in new pages on every request."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from devtools.processes import ROOT
from ingestor import memory, service
from ingestor.generator import GeneratorControl
from ingestor.store import ReadingStore
from ingestor.v1 import ingestor_pb2 as pb

# Page faults while allocating, filling and freeing a request's worth of columns (1M readings),
# five times over, before and after the setting; in a fresh interpreter, as it is process-wide.
_SCRIPT = """
import json, resource
import numpy as np
from functions.memory import retain_freed_memory

def faults_per_request():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        columns = [np.ones(1_000_000, dtype) for dtype in ("<i8", "<f8", "<u2")]
        del columns
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5

faults_per_request()
default = faults_per_request()
applied = retain_freed_memory()
faults_per_request()
print(json.dumps({"default": default, "applied": applied, "retained": faults_per_request()}))
"""


@pytest.mark.slow  # counted in a fresh interpreter
def test_freed_columns_are_reused_without_page_faults() -> None:
    run = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True)
    faults = json.loads(run.stdout)
    assert faults["applied"] is True
    # 18 MB of new pages is thousands of faults (fewer with transparent huge pages); reused ones none.
    assert faults["default"] > 500
    assert faults["retained"] < 50


@pytest.mark.slow  # counted in a fresh interpreter
def test_the_app_applies_it_where_the_process_starts() -> None:
    script = _SCRIPT.split("faults_per_request()\ndefault")[0] + (
        "import functions.app\nfaults_per_request()\nprint(json.dumps({'retained': faults_per_request()}))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(run.stdout)["retained"] < 50


# The ingestor side: freed write buffers go back to the system once writes pause.
_RELEASE_SCRIPT = """
import json
from ingestor.memory import release_freed_memory

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

# Freed buffers that glibc keeps (here made certain by telling it to keep them all).
from functions.memory import retain_freed_memory

retain_freed_memory()
buffers = [bytearray(b"x" * 600_000) for _ in range(40)]
del buffers
before = rss_kb()
release_freed_memory()
print(json.dumps({"before": before, "after": rss_kb()}))
"""


@pytest.mark.slow  # counted in a fresh interpreter
def test_freed_write_buffers_are_handed_back_to_the_system() -> None:
    run = subprocess.run([sys.executable, "-c", _RELEASE_SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True)
    rss = json.loads(run.stdout)
    assert rss["before"] - rss["after"] > 20_000  # the 24 MB freed go back


@pytest.mark.anyio
async def test_large_writes_release_memory_once_per_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[float] = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: released.append(time.monotonic()))
    monkeypatch.setattr(memory, "RELEASE_DELAY_S", 0.05)
    store = ReadingStore(100_000)
    servicer = service.IngestorServicer(store, GeneratorControl(store, 1.0, ("A",)))
    big = memory.RELEASE_AFTER_READINGS
    columns = pb.ReadingColumns(
        timestamps_ns=np.arange(big, dtype="<i8").tobytes(),
        values=np.ones(big, "<f8").tobytes(),
        category_codes=np.zeros(big, "<u2").tobytes(),
    )
    small = pb.WriteReadingsRequest(readings=[pb.Reading(value=1.0, category="A")])
    small.readings[0].timestamp.FromNanoseconds(1)
    await servicer.WriteReadings(small, None)  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert released == []  # small writes leave little behind
    for _ in range(3):
        await servicer.WriteReadings(
            pb.WriteReadingsRequest(columns=columns, column_categories=["A"]),
            None,  # type: ignore[arg-type]
        )
    await asyncio.sleep(0.1)
    assert len(released) == 1  # three writes in a row, one release after them
    await servicer.WriteReadings(pb.WriteReadingsRequest(columns=columns, column_categories=["A"]), None)  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert len(released) == 2
