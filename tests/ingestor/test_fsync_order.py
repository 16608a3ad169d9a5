"""The order of system calls: the acknowledgement leaves the ingestor only after the fsync returned.

``kill -9`` leaves the page cache intact, so the crash test alone cannot tell a missing fsync. Here the
ingestor runs under strace, which records its writes to the write-ahead log, its syncs and the
messages it sends, in the order they happen.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from devtools.processes import ServerProcess
from ingestor.journal_file import FILE_NAME
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeProcess

# The ingestor runs under strace.
pytestmark = pytest.mark.slow

ACCEPTED = 12_345
# The serialized WriteReadingsResponse(accepted=12345, durable=true) as strace -x prints it (a string
# with any unprintable byte is printed all in hex).
RESPONSE = r"\x08\xb9\x60\x18\x01"
WAL_WRITE = re.compile(r"^\d+\s+pwrite64\(\d+<[^>]*" + re.escape(f"/{FILE_NAME}-wal>"))
WAL_SYNC = re.compile(r"^(\d+)\s+f(data)?sync\(\d+<[^>]*" + re.escape(f"/{FILE_NAME}-wal>"))
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. f(data)?sync resumed>")


def wal_sync_returned(lines: list[str]) -> bool:
    """Whether a sync of the write-ahead log returned 0 in ``lines``: on one line, or on two when another
    thread's call came between its start ("<unfinished ...>") and its end ("<... fdatasync resumed>")."""
    started_by: set[str] = set()
    for line in lines:
        if match := WAL_SYNC.match(line):
            if line.endswith(") = 0"):
                return True
            started_by.add(match.group(1))
        elif (match := RESUMED.match(line)) and match.group(1) in started_by and line.endswith(") = 0"):
            return True
    return False


def kill_traced(process: ServerProcess) -> None:
    """End strace and its ingestor; strace leaves its tracee running when it dies: end the ingestor first."""
    if process.process.poll() is not None:
        return
    tracer = process.process.pid
    for child in Path(f"/proc/{tracer}/task/{tracer}/children").read_text().split():
        os.kill(int(child), signal.SIGKILL)
    process.stop(signal.SIGKILL)


@pytest.fixture
def traced_ingestor(tmp_path: Path, make_ingestor_process: MakeProcess) -> Iterator[tuple[ServerProcess, Path]]:
    """A durable ingestor under strace, and the file strace writes; both ended at teardown."""
    trace = tmp_path / "strace.log"
    prefix = ["strace", "-f", "-qq", "-y", "-x", "-s", "256", "-o", str(trace)]
    prefix += ["-e", "trace=pwrite64,fdatasync,fsync,sendmsg,sendto,write,writev", "-e", "signal=none"]
    process = make_ingestor_process(prefix=prefix, timeout=60, data_dir=tmp_path / "data")
    yield process, trace
    kill_traced(process)


def test_the_response_is_sent_after_the_wal_is_synced(traced_ingestor: tuple[ServerProcess, Path]) -> None:
    process, trace = traced_ingestor
    values = np.arange(ACCEPTED, dtype="<f8")
    request = pb.WriteReadingsRequest(
        columns=pb.ReadingColumns(
            timestamps_ns=values.astype("<i8").tobytes(),
            values=values.tobytes(),
            category_codes=np.zeros(ACCEPTED, dtype="<u2").tobytes(),
        ),
        column_categories=["A"],
    )
    with grpc.insecure_channel(process.address) as channel:
        response = pb_grpc.IngestorServiceStub(channel).WriteReadings(request, timeout=30)
    assert (response.accepted, response.durable) == (ACCEPTED, True)
    kill_traced(process)  # strace has written every call to the file once it has ended

    lines = trace.read_text().splitlines()
    sent = [i for i, line in enumerate(lines) if RESPONSE in line]
    assert len(sent) == 1, "the response was not found exactly once in the trace"
    before_response = lines[: sent[0]]
    wal_writes = [i for i, line in enumerate(before_response) if WAL_WRITE.search(line)]
    assert wal_writes, "the batch was not written to the write-ahead log before the response"
    # Between the last write to the log and the response, a sync of the log returned 0.
    between = before_response[wal_writes[-1] + 1 :]
    assert wal_sync_returned(between), (
        "no sync of the write-ahead log returned between its last write and the response:\n" + "\n".join(between)
    )
