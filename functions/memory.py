"""Keep freed memory in the process for the next request (glibc's malloc only)."""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
HEAP_ALLOCATIONS_UP_TO = 32 * 1024 * 1024
"""glibc's largest mmap threshold on 64-bit systems: allocations up to this size come from the heap."""
KEEP_FREED_UP_TO = 512 * 1024 * 1024
"""Freed heap memory kept for reuse rather than returned to the operating system."""


def retain_freed_memory() -> bool:
    """Have glibc reuse freed memory for the next request instead of handing it back to the system.

    Every /processed-data allocates its columns afresh (18 bytes a reading) and pandas its group
    ids. By default glibc maps allocations that large anew each time and unmaps them when freed,
    and every new page costs a fault (docs/performance.md has the cost).
    The process then keeps the memory of its largest request instead of returning it. True when
    applied; elsewhere than glibc it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_ALLOCATIONS_UP_TO)) and bool(
        mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_UP_TO)
    )
