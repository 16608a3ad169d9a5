"""One ingestor per data directory: a second one is refused at once, with a message that says so,
also when the directory's file system does not answer lock requests (a network file system)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.processes import ROOT
from ingestor.errors import JournalError
from ingestor.journal import Journal
from tests.support.factories import MakeProcess
from tests.support.slow_disk import slow_disk

pytestmark = [pytest.mark.slow, pytest.mark.serial]


def run_ingestor(data_dir: Path | None, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``python -m ingestor`` to its end (it is expected to fail at start), and how long it took."""
    env = {**os.environ, "INGESTOR_HOST": "127.0.0.1", "INGESTOR_PORT": "0"}
    if data_dir is not None:
        env["INGESTOR_DATA_DIR"] = str(data_dir)
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "ingestor", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    return finished, time.monotonic() - started


def test_a_second_ingestor_exits_within_a_second_naming_the_first(
    tmp_path: Path, make_ingestor_process: MakeProcess
) -> None:
    first = make_ingestor_process(data_dir=tmp_path)
    # The same imports and start-up, ending at an invalid setting: what any start costs here.
    refused_config, baseline = run_ingestor(None, "--port", "-1")
    assert refused_config.returncode == 2
    second, elapsed = run_ingestor(tmp_path)
    assert second.returncode == 1
    assert "cannot start: " in second.stderr
    assert "is in use by another ingestor" in second.stderr
    assert f"(pid {first.process.pid} on " in second.stderr
    assert "Traceback" not in second.stderr
    # Before, it waited out SQLite's 5 s busy timeout first.
    assert elapsed - baseline < 1.0, (elapsed, baseline)
    assert first.stop() == 0
    # Once the first is gone the directory is free again.
    third = make_ingestor_process(data_dir=tmp_path)
    assert third.stop() == 0


def test_the_refusal_takes_no_time_of_its_own(tmp_path: Path, make_ingestor_process: MakeProcess) -> None:
    make_ingestor_process(data_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(JournalError, match="is in use by another ingestor"):
        Journal(tmp_path, capacity=10, batch_id_window=10)
    assert time.monotonic() - started < 1.0


def test_a_file_system_that_sits_on_the_lock_request_is_given_up_on_within_a_second() -> None:
    # A FUSE file system that answers flock only after 4 s, as an NFS server that cannot be reached
    # would: without a bound of its own, the ingestor would wait as long (or for ever).
    with slow_disk(fsync_delay_s=0.0, lock_delay_s=4.0) as disk:
        started = time.monotonic()
        with pytest.raises(JournalError, match=r"did not answer a lock request within 0\.5 s"):
            Journal(disk / "data", capacity=10, batch_id_window=10)
        assert time.monotonic() - started < 1.0

        _, baseline = run_ingestor(None, "--port", "-1")
        env = {**os.environ, "INGESTOR_HOST": "127.0.0.1", "INGESTOR_PORT": "0", "INGESTOR_DATA_DIR": str(disk)}
        started = time.monotonic()
        # Leaving the block closes its pipe (and waits for it).
        with subprocess.Popen(
            [sys.executable, "-m", "ingestor"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
        ) as second:
            assert second.stderr is not None
            message = second.stderr.readline()
            said_after = time.monotonic() - started
            assert message.startswith("cannot start: ")
            assert "did not answer a lock request within 0.5 s" in message
            assert said_after - baseline < 1.0, (said_after, baseline)
            # The kernel lets a process with a FUSE request in flight go only once it is answered.
            assert second.wait(timeout=30) == 1
