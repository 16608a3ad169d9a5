"""Hand freed memory back to the system (glibc's malloc only), shortly after large writes."""

from __future__ import annotations

import asyncio
import ctypes
import sys
from collections.abc import Callable

RELEASE_AFTER_READINGS = 16_384
"""Writes at least this large (~300 KB) hand their freed buffers back to the system afterwards."""
RELEASE_DELAY_S = 0.1


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


_trim = _malloc_trim()


def release_freed_memory() -> None:
    """Return the free pages of every malloc arena to the system.

    A large write passes through several megabytes of buffers (the received message, the parsed
    columns, their validation) that are freed once the readings are in the store. glibc keeps such
    memory, fragmented across the arenas of the threads that used it, so without this the
    ingestor's memory would grow by more than its buffer. It is cheap next to such a write.
    """
    if _trim is not None:
        _trim(0)


class ReleaseAfterLargeWrites:
    """Hands the buffers of large writes back to the system shortly after, once per pause.

    Not at once: the call still holds its request, and a bulk producer's next write would only
    fault the same pages in again. At most every RELEASE_DELAY_S while writes continue. Runs on the
    event loop.
    """

    def __init__(self) -> None:
        self._pending = False

    def wrote(self, readings: int) -> None:
        """A write of ``readings`` was stored."""
        if readings < RELEASE_AFTER_READINGS or self._pending:
            return
        self._pending = True
        asyncio.get_running_loop().call_later(RELEASE_DELAY_S, self._release)

    def _release(self) -> None:
        self._pending = False
        release_freed_memory()
