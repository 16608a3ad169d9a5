"""Wait for a condition with a deadline, or sample a value for a while, instead of hand-written polling loops."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, message: str, interval: float = 0.02) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises TimeoutError with ``message`` and the last value seen once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} (still {value!r} after {timeout:g} s)")
        time.sleep(interval)
    return value


def sample_for(read: Callable[[], T], seconds: float, interval: float) -> list[T]:
    """Call ``read``, then wait ``interval`` seconds, until ``seconds`` seconds have passed; return what it read."""
    samples: list[T] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(read())
        time.sleep(interval)
    return samples
