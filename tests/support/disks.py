"""Small real file systems for tests of what happens when the disk is full (needs root, as CI has)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_tmpfs(size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted on a fresh directory, unmounted afterwards."""
    with tempfile.TemporaryDirectory(prefix="small-disk-") as directory:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", directory], check=True)
        try:
            yield Path(directory)
        finally:
            subprocess.run(["umount", "--lazy", directory], check=True)
