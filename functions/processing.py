"""Pure data work on readings: pandas aggregation and JSON-ready records. No I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


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

    def __len__(self) -> int:
        return len(self.timestamps_ns)

    @classmethod
    def empty(cls) -> Readings:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint16), ())


AGGREGATE_COLUMNS = ["category", "avg_value", "count", "last_timestamp"]


def aggregate_by_category(readings: Readings) -> pd.DataFrame:
    """Mean value, count and latest event time per category, one row per category, sorted by name.

    ``last_timestamp`` is int64 nanoseconds. Categories without readings are left out.
    """
    if len(readings) == 0:
        return pd.DataFrame({"category": [], "avg_value": [], "count": [], "last_timestamp": []})
    categories = pd.Index(readings.categories, dtype=object)
    keys = pd.Categorical.from_codes(readings.codes, categories=categories)
    # The columns are used as they are, not copied: the aggregation only reads them. Timestamps are
    # viewed as datetime64 so that an empty category's max is NaT, not a NaN that would turn the
    # column into float64 and round the nanoseconds.
    timestamps = readings.timestamps_ns.view("datetime64[ns]")
    frame = pd.DataFrame({"value": readings.values, "timestamp": timestamps}, copy=False)
    # observed=False groups by the codes as they are; observed=True would first compute which
    # categories occur, a pass over every reading. Empty categories are dropped afterwards.
    grouped = frame.groupby(keys, observed=False, sort=False)
    result = pd.DataFrame(
        {
            "avg_value": grouped["value"].mean(),
            # Values are always finite (the ingestor refuses others), so every row counts.
            "count": grouped.size(),
            "last_timestamp": grouped["timestamp"].max(),
        }
    )
    result = result[result["count"] > 0].astype({"last_timestamp": np.int64})
    result.index = result.index.astype(object)
    return result.sort_index().rename_axis("category").reset_index()


def format_timestamps(timestamps_ns: np.ndarray) -> np.ndarray:
    """ISO 8601 in UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, truncated from nanoseconds, vectorised."""
    micros = np.asarray(timestamps_ns, dtype=np.int64) // 1000
    return np.datetime_as_string(micros.astype("datetime64[us]"), unit="us", timezone="UTC")


def processed_records(aggregates: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of :func:`aggregate_by_category` as JSON-ready dicts."""
    return [
        {"category": category, "avg_value": avg, "count": count, "last_timestamp": last}
        for category, avg, count, last in zip(
            aggregates["category"].tolist(),
            aggregates["avg_value"].astype(np.float64).tolist(),
            aggregates["count"].astype(np.int64).tolist(),
            format_timestamps(aggregates["last_timestamp"].to_numpy(dtype=np.int64)).tolist(),
            strict=True,
        )
    ]


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
