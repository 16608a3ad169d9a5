"""Hand freed memory back to the system (glibc's malloc only)."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable


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
    ingestor's memory would grow by more than its buffer. Takes tens of microseconds.
    """
    if _trim is not None:
        _trim(0)
