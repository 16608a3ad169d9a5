"""The data directory's lock: one ingestor at a time, and a second one refused at once.

An exclusive ``flock`` on ``ingestor.lock`` in the directory, taken without waiting, and held for as
long as the journal is open; the kernel drops it when the process ends, however it ends. On NFS
(EFS included) Linux turns it into a lock on the server, so two hosts exclude each other too. The
attempt itself gets a bound: a network file system whose server does not answer could otherwise
hold the start for minutes, so after ``LOCK_TIMEOUT_S`` the ingestor gives up and says why.
SQLite's own exclusive lock stays behind this one, but a second process would wait out its busy
timeout (5 s) before it failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from pathlib import Path

from ingestor.errors import JournalError

LOCK_FILE = "ingestor.lock"
LOCK_TIMEOUT_S = 0.5
"""How long taking the lock may take: locally microseconds, on EFS a round trip to the server."""
FILE_MODE = 0o600


class DirectoryLock:
    """Held until :meth:`release` (or the end of the process)."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor of the open file drops the flock
            self._fd = None


def lock_directory(data_dir: Path, timeout_s: float = LOCK_TIMEOUT_S) -> DirectoryLock:
    """Take the directory's lock, or raise JournalError at once (within ``timeout_s``) saying why not."""
    outcome: list[DirectoryLock | BaseException] = []
    done = threading.Event()
    guard = threading.Lock()
    abandoned = False

    def attempt() -> None:
        result: DirectoryLock | BaseException
        try:
            result = _take(data_dir)
        except BaseException as error:
            result = error
        with guard:
            if abandoned:  # answered after all, too late: nobody holds the lock for us
                if isinstance(result, DirectoryLock):
                    result.release()
                return
            outcome.append(result)
            done.set()

    # A thread, so that a lock request the file system never answers cannot hold the start. (The
    # process still cannot end before the file system answers where the kernel waits for it
    # uninterruptibly, as for FUSE; NFS requests can be killed.)
    threading.Thread(target=attempt, name="data-dir-lock", daemon=True).start()
    if not done.wait(timeout_s):
        with guard:
            if not done.is_set():
                abandoned = True
                raise JournalError(
                    f"data directory {str(data_dir)!r}: its file system did not answer a lock request within "
                    f"{timeout_s} s (a network file system that cannot be reached?)"
                )
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _take(data_dir: Path) -> DirectoryLock:
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as error:
        raise JournalError(f"cannot use data directory {str(data_dir)!r}: {error}") from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise JournalError(
            f"data directory {str(data_dir)!r} is in use by another ingestor{holder}: one ingestor per directory"
        ) from None
    except OSError as error:
        os.close(fd)
        raise JournalError(f"cannot lock data directory {str(data_dir)!r}: {error}") from error
    # Who holds it, for the message of the next one; a full disk may refuse the line, and the lock
    # holds without it.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return DirectoryLock(fd)


def _holder(fd: int) -> str:
    try:
        line = os.pread(fd, 200, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" ({line})" if line.startswith("pid ") else ""
