"""Plain-Python references that results are checked against: written out by hand, one item at a time."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the two closest ranks, by hand."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class LateReference:
    """The late flag of every reading, in arrival order: late when its event time is older than the
    newest event time that arrived before it."""

    def __init__(self) -> None:
        self.flags: list[bool] = []
        self.newest: int | None = None

    def extend(self, timestamps: list[int]) -> None:
        for t in timestamps:
            self.flags.append(self.newest is not None and t < self.newest)
            self.newest = t if self.newest is None else max(self.newest, t)


def late_flags(timestamps: list[int]) -> list[int]:
    """The late flags of readings that arrived in this order, as 0 and 1."""
    reference = LateReference()
    reference.extend(timestamps)
    return [int(flag) for flag in reference.flags]
