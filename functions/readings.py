"""Readings as columns, the form they travel and are aggregated in, and as JSON-ready rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from functions.timestamps import format_timestamps


@dataclass(frozen=True, slots=True)
class Readings:
    """Readings column by column, as they arrive from the ingestor, oldest first."""

    timestamps_ns: np.ndarray
    """int64 nanoseconds since the Unix epoch, UTC."""
    values: np.ndarray
    """float64."""
    codes: np.ndarray
    """uint16 indexes into ``categories``."""
    categories: Sequence[str]
    """The category dictionary."""
    late: np.ndarray | None = None
    """uint8 late flags (1: the reading's event time was older than the newest stored before it),
    when they were asked for."""

    def __len__(self) -> int:
        return len(self.timestamps_ns)

    @classmethod
    def empty(cls) -> Readings:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint16), ())

    def slice(self, start: int, stop: int) -> Readings:
        """Readings ``start`` to ``stop``, views of these columns with the same dictionary."""
        return Readings(
            self.timestamps_ns[start:stop],
            self.values[start:stop],
            self.codes[start:stop],
            self.categories,
            self.late[start:stop] if self.late is not None else None,
        )


def raw_records(readings: Readings) -> list[dict[str, Any]]:
    """Each reading as a JSON-ready ``{"timestamp", "value", "category"}`` dict, in order."""
    names = np.asarray(readings.categories, dtype=object)[readings.codes] if len(readings) else []
    return [
        {"timestamp": timestamp, "value": value, "category": category}
        for timestamp, value, category in zip(
            format_timestamps(readings.timestamps_ns).tolist(),
            readings.values.tolist(),
            list(names),
            strict=True,
        )
    ]
