"""Aggregates of readings with pandas, and their JSON-ready rows. Pure data work: no I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from functions.readings import Readings
from functions.timestamps import format_timestamps

AGGREGATE_COLUMNS = ["category", "avg_value", "count", "last_timestamp"]


def _category_keys(readings: Readings) -> pd.Categorical:
    """The readings' categories for grouping: their codes as they are, over their dictionary."""
    return pd.Categorical.from_codes(readings.codes, categories=pd.Index(list(readings.categories), dtype="object"))


def aggregate_by_category(readings: Readings) -> pd.DataFrame:
    """Mean value, count and latest event time per category, one row per category, sorted by name.

    ``last_timestamp`` is int64 nanoseconds. Categories without readings are left out.
    """
    if len(readings) == 0:
        return pd.DataFrame({"category": [], "avg_value": [], "count": [], "last_timestamp": []})
    keys = _category_keys(readings)
    # The columns are used as they are, not copied: the aggregation only reads them. Timestamps are
    # viewed as datetime64 so that an empty category's max is NaT, not a NaN that would turn the
    # column into float64 and round the nanoseconds.
    timestamps = readings.timestamps_ns.view("datetime64[ns]")
    frame = pd.DataFrame({"value": readings.values, "timestamp": timestamps}, copy=False)
    # observed=False with sort=True groups by the codes as they are. observed=True would first find
    # which categories occur, and sort=False would renumber the groups in order of appearance: each
    # a pass over every reading. Empty categories are dropped afterwards.
    grouped = frame.groupby(keys, observed=False, sort=True)  # type: ignore[call-overload]
    # Values are always finite (the ingestor refuses others), so every row counts, and the mean is
    # the sum over the size: pandas' groupby sum is the same compensated summation as its mean,
    # and faster (docs/performance.md).
    count = grouped.size()
    result = pd.DataFrame(
        {
            "avg_value": grouped["value"].sum() / count,
            "count": count,
            "last_timestamp": grouped["timestamp"].max(),
        }
    )
    result = result[result["count"] > 0].astype({"last_timestamp": np.int64})
    result.index = result.index.astype(object)
    return result.sort_index().rename_axis("category").reset_index()


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


EXTRA_STATS = ("min", "max", "sum", "std", "first_timestamp", "p50", "p90", "p95", "p99")
"""Statistics a caller may add to the original four, each under its own name."""

_PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


class TooManyGroups(ValueError):
    """The aggregation would produce more result objects than allowed."""


def aggregate(
    readings: Readings,
    *,
    window_ns: int | None = None,
    stats: Sequence[str] = (),
    max_groups: int | None = None,
) -> pd.DataFrame:
    """Per category, or per tumbling event-time window and category, the original four aggregates
    plus ``stats``.

    Windows are aligned to the Unix epoch: a reading at ``t`` falls in the window starting at
    ``t // window_ns * window_ns``; ``window_start``/``window_end`` (exclusive) are int64 ns. Empty
    windows are left out. Rows are sorted by window, then category name. ``std`` is the sample
    standard deviation (NaN when a group has fewer than two readings); percentiles interpolate
    linearly; ``first_timestamp`` is the earliest event time. TooManyGroups when there would be
    more than ``max_groups`` rows.
    """
    if len(readings) == 0:
        window_columns = ["window_start", "window_end"] if window_ns is not None else []
        return pd.DataFrame(columns=[*AGGREGATE_COLUMNS, *window_columns, *stats])
    frame = pd.DataFrame(
        {"value": readings.values, "timestamp": readings.timestamps_ns, "category": _category_keys(readings)}
    )
    by = ["category"]
    if window_ns is not None:
        frame["window"] = readings.timestamps_ns // window_ns
        by = ["window", "category"]
    grouped = frame.groupby(by, observed=True, sort=False)
    if max_groups is not None and grouped.ngroups > max_groups:
        raise TooManyGroups(f"{grouped.ngroups} result objects, more than {max_groups}")
    values = grouped["value"]
    columns: dict[str, pd.Series] = {
        "avg_value": values.mean(),
        "count": values.count(),
        "last_timestamp": grouped["timestamp"].max(),
    }
    for name in stats:
        if name in ("min", "max", "sum"):
            columns[name] = getattr(values, name)()
        elif name == "std":
            columns[name] = values.std(ddof=1)
        elif name == "first_timestamp":
            columns[name] = grouped["timestamp"].min()
        else:
            columns[name] = values.quantile(_PERCENTILES[name], interpolation="linear")
    result = pd.DataFrame(columns).reset_index()
    result["category"] = result["category"].astype(object)
    if window_ns is not None:
        result["window_start"] = result.pop("window").astype(np.int64) * window_ns
        result["window_end"] = result["window_start"] + window_ns
    order = ["window_start", "category"] if window_ns is not None else ["category"]
    return result.sort_values(order, kind="stable", ignore_index=True)


def aggregate_records(aggregates: pd.DataFrame, stats: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of :func:`aggregate` as JSON-ready dicts: the original four keys, the window
    bounds when there are windows, then ``stats`` in the order asked (NaN becomes null)."""
    if len(aggregates) == 0:
        return []
    base = processed_records(aggregates)
    extra: dict[str, list[Any]] = {}
    if "window_start" in aggregates:
        extra["window_start"] = format_timestamps(aggregates["window_start"].to_numpy(np.int64)).tolist()
        extra["window_end"] = format_timestamps(aggregates["window_end"].to_numpy(np.int64)).tolist()
    for name in stats:
        column = aggregates[name]
        if name == "first_timestamp":
            extra[name] = format_timestamps(column.to_numpy(np.int64)).tolist()
        else:
            numbers = column.to_numpy(np.float64)
            extra[name] = [None if np.isnan(x) else x for x in numbers.tolist()]
    names = list(extra)
    return [
        {**record, **dict(zip(names, row, strict=True))}
        for record, row in zip(base, zip(*extra.values(), strict=True) if names else [()] * len(base), strict=True)
    ]
