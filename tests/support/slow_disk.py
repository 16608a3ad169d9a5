"""A disk that is really slow to sync: a FUSE pass-through whose fsync sleeps (needs root and /dev/fuse).

``python -m tests.support.slow_disk BACKING MOUNTPOINT --delay-file FILE`` serves BACKING at MOUNTPOINT in
the foreground; :func:`slow_disk` runs it for a test. Every call but fsync passes straight through
to the backing directory, so what SQLite writes is really written; fsync and fdatasync really sync
the backing file, then sleep for the seconds FILE holds (read at each call, so a test can make the
disk slow once its files are set up: :func:`set_fsync_delay`), as a network file system under load
or a worn disk would.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devtools.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class SlowSync:
    """The pass-through operations (mfusepy's interface: paths relative to the mount, file handles as ints)."""

    use_ns = True

    def __init__(self, backing: Path, delay_file: Path, lock_delay_s: float = 0.0) -> None:
        self.backing = backing
        self.delay_file = delay_file
        self.lock_delay_s = lock_delay_s
        if lock_delay_s:
            # Only then does the kernel hand flock requests to the file system instead of locking locally.
            self.flock = self._flock

    def _path(self, path: str) -> str:
        return str(self.backing / path.lstrip("/"))

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        status = os.lstat(self._path(path))
        names = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns", "st_ctime_ns")
        attributes = {name.replace("_ns", ""): getattr(status, name) for name in names}
        return attributes

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._path(path))]

    def statfs(self, path: str) -> dict[str, int]:
        info = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_frsize")
        return {key: getattr(info, key) for key in keys} | {"f_namemax": info.f_namemax}

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._path(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._path(path))
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._path(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._path(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._path(path), ns=times)
        return 0

    def unlink(self, path: str) -> int:
        os.unlink(self._path(path))
        return 0

    def rename(self, old: str, new: str) -> int:
        os.rename(self._path(old), self._path(new))
        return 0

    def open(self, path: str, flags: int) -> int:
        return os.open(self._path(path), flags)

    def create(self, path: str, mode: int, fi: object = None) -> int:
        return os.open(self._path(path), os.O_RDWR | os.O_CREAT, mode)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return os.pwrite(fh, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        if fh is None:
            os.truncate(self._path(path), length)
        else:
            os.ftruncate(fh, length)
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        (os.fdatasync if datasync else os.fsync)(fh)
        time.sleep(float(self.delay_file.read_text() or 0))
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0

    def _flock(self, path: str, fh: int, op: int) -> int:
        """A lock request the file system sits on (an NFS server that does not answer): only with --lock-delay."""
        time.sleep(self.lock_delay_s)
        fcntl.flock(fh, op)
        return 0

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._path(path), amode):
            raise OSError(errno.EACCES, "no access")
        return 0


def _delay_file(mountpoint: Path) -> Path:
    return mountpoint.parent / "fsync-delay"


def set_fsync_delay(mountpoint: Path, seconds: float) -> None:
    """From now on every fsync on the slow disk at ``mountpoint`` takes ``seconds`` more."""
    _delay_file(mountpoint).write_text(str(seconds))


@contextlib.contextmanager
def slow_disk(fsync_delay_s: float, lock_delay_s: float = 0.0) -> Iterator[Path]:
    """A fresh directory whose fsync takes ``fsync_delay_s`` longer than the disk's (and whose flock
    takes ``lock_delay_s``, when set), unmounted afterwards."""
    with tempfile.TemporaryDirectory(prefix="slow-disk-") as work:
        backing, mountpoint = Path(work) / "backing", Path(work) / "mount"
        backing.mkdir()
        mountpoint.mkdir()
        set_fsync_delay(mountpoint, fsync_delay_s)
        command = [sys.executable, "-m", "tests.support.slow_disk", str(backing), str(mountpoint)]
        command += ["--delay-file", str(_delay_file(mountpoint)), "--lock-delay", str(lock_delay_s)]
        server = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)

        def mounted() -> bool:
            if server.poll() is not None:
                raise RuntimeError(f"the slow disk did not mount: {server.communicate(timeout=5)[1]}")
            return os.path.ismount(mountpoint)

        try:
            wait_until(mounted, 10, "the slow disk did not mount")
            yield mountpoint
        finally:
            subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)
            try:
                server.communicate(timeout=10)  # waits, and closes its stderr pipe
            except subprocess.TimeoutExpired:
                server.kill()
                server.communicate()


def main() -> None:
    from mfusepy import FUSE  # type: ignore[import-untyped]

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("backing", type=Path)
    parser.add_argument("mountpoint")
    parser.add_argument("--delay-file", type=Path, required=True)
    parser.add_argument("--lock-delay", type=float, default=0.0)
    arguments = parser.parse_args()
    operations = SlowSync(arguments.backing, arguments.delay_file, arguments.lock_delay)
    # Threads: a read (a status call) is never queued behind a sleeping fsync.
    FUSE(operations, arguments.mountpoint, foreground=True, nothreads=False)


if __name__ == "__main__":
    main()
