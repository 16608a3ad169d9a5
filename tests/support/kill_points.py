"""Kill a running ingestor at a chosen system call of its journal, with strace's fault injection.

strace attaches to the journal's writer thread alone, once the ingestor is up, so calls are counted
from that moment on and the rest of the ingestor runs at full speed: the n-th ``fdatasync`` (or
``pwrite64``) of the database file or of its write-ahead log after attaching gets SIGKILL, before it
runs. In WAL mode with ``synchronous=FULL`` SQLite syncs with ``fdatasync``: the log once per commit,
after writing its frames (two ``pwrite64`` a page), and the database file at the end of a
checkpoint, after copying pages into it.

To kill a commit of many batches, the first commit after attaching can be held for a second (at its
first write to the file, or at its sync when the kill is a write): batches sent meanwhile queue up,
and the writer takes them all into the next commit.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devtools.waiting import wait_until
from ingestor.journal_file import FILE_NAME

DATABASE = FILE_NAME
WAL = f"{FILE_NAME}-wal"
PAGE = 4096
STALL_US = 1_000_000


@dataclass(frozen=True)
class KillPoint:
    name: str
    syscall: str
    """``fdatasync`` or ``pwrite64``."""
    file: str
    """``DATABASE`` or ``WAL``."""
    call: int
    """The n-th such call on that file after attaching, counting from 1."""
    after_compaction_run: bool = False
    """Attach only once all but one of a run of rows to merge are committed, so that the next
    commit is the one that merges them (see ``ingestor.journal.COMPACT_RUN``)."""
    stall_first_commit: bool = False
    """Hold the first commit after attaching for ``STALL_US``; ``call`` then counts it too."""


def _written_bytes(pid: int) -> dict[int, int]:
    """Bytes each thread of ``pid`` has passed to write calls so far."""
    written = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = dict(line.split(": ") for line in (task / "io").read_text().splitlines())
        written[int(task.name)] = int(fields["wchar"])
    return written


def journal_writer(pid: int, commit_one: Callable[[], None]) -> int:
    """The id of the thread that writes the journal: the one that writes pages while ``commit_one``
    has a batch committed (the others only write a few bytes, to wake each other up)."""
    before = _written_bytes(pid)
    commit_one()
    grown = {thread: written - before.get(thread, 0) for thread, written in _written_bytes(pid).items()}
    writers = [thread for thread, growth in grown.items() if growth >= PAGE]
    assert len(writers) == 1, f"not one thread wrote pages of the journal: {grown}"
    return writers[0]


def _traced_by(thread: int, tracer: int) -> bool:
    status = Path(f"/proc/{thread}/status").read_text()
    return int(status.split("TracerPid:")[1].split()[0]) == tracer


def attach(thread: int, data_dir: Path, point: KillPoint, timeout: float = 10) -> subprocess.Popen[str]:
    """Attach strace to ``thread``, armed to kill its process at ``point``; return once attached."""
    syscalls = [point.syscall]
    command = ["strace", "-qq", "-o", "/dev/null", "-p", str(thread), "-e", "signal=none"]
    command += ["-P", str(data_dir / point.file), "-e", f"inject={point.syscall}:signal=KILL:when={point.call}"]
    if point.stall_first_commit:
        other = "pwrite64" if point.syscall == "fdatasync" else "fdatasync"
        syscalls.append(other)
        command += ["-e", f"inject={other}:delay_enter={STALL_US}:when=1"]
    command += ["-e", f"trace={','.join(syscalls)}"]
    tracer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def attached() -> bool:
        if tracer.poll() is not None:
            raise RuntimeError(f"strace could not attach to thread {thread}: {tracer.communicate()[1]}")
        return _traced_by(thread, tracer.pid)

    try:
        wait_until(attached, timeout, f"strace did not attach to thread {thread}", interval=0.005)
    except TimeoutError:
        tracer.kill()
        tracer.communicate()
        raise
    return tracer


def wait_until_stalled(thread: int, timeout: float = 10) -> None:
    """Return once ``thread`` has been held by its tracer for a while: the stall, not a passing stop."""
    held_since: float | None = None

    def held_for_a_while() -> bool:
        nonlocal held_since
        state = Path(f"/proc/{thread}/stat").read_text().rsplit(")", 1)[1].split()[0]
        now = time.monotonic()
        if state != "t":
            held_since = None
        elif held_since is None:
            held_since = now
        return held_since is not None and now - held_since > 0.05

    wait_until(held_for_a_while, timeout, f"thread {thread} was not stalled", interval=0.005)
