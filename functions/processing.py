"""Aggregates of readings with pandas, and their JSON-ready rows. Pure data work: no I/O here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.indexers import BaseIndexer

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


EXTRA_STATS = ("min", "max", "sum", "std", "first_timestamp", "p50", "p90", "p95", "p99", "late")
"""Statistics a caller may add to the original four, each under its own name."""

_PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
_VALUE_STATS = ("avg_value", "min", "max", "sum", "std", *_PERCENTILES)
"""The columns an empty window's ``fill`` gives values to."""
FILL_MODES = ("null", "zero", "previous", "linear")
NO_TIME = np.iinfo(np.int64).min
"""An empty window's timestamps (NaT as int64): null in JSON."""
_KEY_SHIFT = 40
_KEY_OFFSET = 1 << 39
"""Window (or pane) numbers of a category as one int64: code << 40 | number + 2**39 (|number| < 2**39
for any step of a second or more)."""


class TooManyGroups(ValueError):
    """The aggregation would produce more result objects than allowed."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Which windows: tumbling (``length_ns``), hopping (and ``step_ns``) or session (``session_gap_ns``);
    then which of them, and how."""

    length_ns: int | None = None
    step_ns: int | None = None
    """Hopping: a window starts every ``step_ns`` (``length_ns`` a multiple of it); None: tumbling."""
    session_gap_ns: int | None = None
    grace_ns: int | None = None
    """With a grace, each window says whether it is closed: ``window_end + grace <= watermark``."""
    final_only: bool = False
    """Only the closed windows (grace 0 unless given)."""
    fill: str | None = None
    """Empty windows between a category's first and last (or ``since`` and ``until``): one of FILL_MODES."""
    since_ns: int | None = None
    until_ns: int | None = None

    @property
    def step(self) -> int:
        """The distance between window starts (tumbling: the length)."""
        assert self.length_ns is not None
        return self.step_ns or self.length_ns

    @property
    def says_closed(self) -> bool:
        return self.grace_ns is not None or self.final_only


def last_window_end(timestamps_ns: np.ndarray, windows: WindowSpec) -> np.ndarray:
    """The end of the newest tumbling or hopping window each reading falls in: once it plus the
    grace is at most the watermark, every window of the reading is closed."""
    assert windows.length_ns is not None
    step = windows.step
    return np.asarray(timestamps_ns) // step * step + windows.length_ns


def holds_any(aggregates: pd.DataFrame, readings: Readings) -> np.ndarray:
    """For each window of ``aggregates`` (by category), whether any of ``readings`` falls in it."""
    held = np.zeros(len(aggregates), dtype=bool)
    names = np.asarray(readings.categories, dtype=object)[readings.codes] if len(readings) else np.array([])
    for category in pd.unique(aggregates["category"]):
        rows = (aggregates["category"] == category).to_numpy()
        times = np.sort(readings.timestamps_ns[names == category])
        low = np.searchsorted(times, aggregates["window_start"].to_numpy(np.int64)[rows])
        high = np.searchsorted(times, aggregates["window_end"].to_numpy(np.int64)[rows])
        held[rows] = high > low
    return held


def aggregate(
    readings: Readings,
    *,
    window_ns: int | None = None,
    stats: Sequence[str] = (),
    max_groups: int | None = None,
    windows: WindowSpec | None = None,
) -> pd.DataFrame:
    """Per category, or per event-time window and category, the original four aggregates plus ``stats``.

    Windows are tumbling (``window_ns``, or ``windows.length_ns``), hopping or sessions (``windows``).
    Tumbling and hopping windows are aligned to the Unix epoch: a tumbling window holds the readings
    at ``t`` with ``t // length * length`` as its start; a hopping one starts at every multiple of its
    step, so a reading falls in ``length / step`` windows. A session holds a category's readings each
    closer than the gap to the one before it (in event time): it starts at its first reading and ends
    at its last one plus the gap. ``window_start``/``window_end`` (exclusive) are int64 ns. Empty
    windows are left out unless ``windows.fill`` says how to fill them. Rows are sorted by window,
    then category name. ``std`` is the sample standard deviation (NaN when a group has fewer than
    two readings); percentiles interpolate linearly; ``first_timestamp`` is the earliest event time;
    ``late`` counts the readings that arrived late (``readings.late``). TooManyGroups when there
    would be more than ``max_groups`` rows.
    """
    if windows is None:
        windows = WindowSpec(length_ns=window_ns)
    if len(readings) == 0:
        return empty_aggregates(windows, stats)
    if windows.length_ns is not None and windows.step_ns not in (None, windows.length_ns):
        result = _hopping(readings, windows, stats, max_groups)
    elif windows.session_gap_ns is not None:
        result = _grouped(readings, _session_keys(readings, windows.session_gap_ns), stats, max_groups, windows)
    else:
        keys = readings.timestamps_ns // windows.length_ns if windows.length_ns is not None else None
        result = _grouped(readings, keys, stats, max_groups, windows)
    return finish_windows(result, windows, stats, max_groups, int(readings.timestamps_ns.max()))


def finish_windows(
    result: pd.DataFrame, windows: WindowSpec, stats: Sequence[str], max_groups: int | None, watermark: int
) -> pd.DataFrame:
    """The last steps of :func:`aggregate` over its non-empty windows (``result``), whichever way they
    were computed: empty windows filled, ``closed`` against the ``watermark`` (the newest event time
    covered), the cap, and the order (by window, then category)."""
    windowed = windows.length_ns is not None or windows.session_gap_ns is not None
    if windows.fill is not None:
        result = _filled(result, windows, stats, max_groups, watermark)
    if windows.says_closed:
        closed = result["window_end"] + (windows.grace_ns or 0) <= watermark
        result["closed"] = closed
        if windows.final_only:
            result = result[result["closed"]]
    if max_groups is not None and len(result) > max_groups:
        raise TooManyGroups(f"{len(result)} result objects, more than {max_groups}")
    order = ["window_start", "category"] if windowed else ["category"]
    return result.sort_values(order, kind="stable", ignore_index=True)


def empty_aggregates(windows: WindowSpec, stats: Sequence[str]) -> pd.DataFrame:
    """What :func:`aggregate` answers when no reading matches: its columns, no rows."""
    windowed = windows.length_ns is not None or windows.session_gap_ns is not None
    window_columns = ["window_start", "window_end"] if windowed else []
    window_columns += ["closed"] if windows.says_closed else []
    return pd.DataFrame(columns=[*AGGREGATE_COLUMNS, *window_columns, *stats])


def _frame(readings: Readings, stats: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"value": readings.values, "timestamp": readings.timestamps_ns, "category": _category_keys(readings)}
    )
    if "late" in stats:
        frame["late"] = _late(readings)
    return frame


def _late(readings: Readings) -> np.ndarray:
    return readings.late if readings.late is not None else np.zeros(len(readings), np.uint8)


def _grouped(
    readings: Readings,
    keys: np.ndarray | None,
    stats: Sequence[str],
    max_groups: int | None,
    windows: WindowSpec,
) -> pd.DataFrame:
    """Tumbling windows (``keys``: each reading's window number), sessions (``keys``: session
    numbers) or none (``keys`` None), with pandas groupby reductions."""
    frame = _frame(readings, stats)
    by = ["category"]
    if keys is not None:
        frame["window"] = keys
        by = ["window", "category"]
    grouped = frame.groupby(by, observed=True, sort=False)
    # The groups are the objects unless empty windows are added or open ones left out: then the
    # count is checked at the end, on what would be answered.
    if max_groups is not None and grouped.ngroups > max_groups and windows.fill is None and not windows.final_only:
        raise TooManyGroups(f"{grouped.ngroups} result objects, more than {max_groups}")
    values = grouped["value"]
    columns: dict[str, pd.Series] = {
        "avg_value": values.mean(),
        "count": values.count(),
        "last_timestamp": grouped["timestamp"].max(),
    }
    if windows.session_gap_ns is not None:
        columns["window_start"] = grouped["timestamp"].min()
    for name in stats:
        if name in ("min", "max", "sum"):
            columns[name] = getattr(values, name)()
        elif name == "std":
            columns[name] = values.std(ddof=1)
        elif name == "first_timestamp":
            columns[name] = grouped["timestamp"].min()
        elif name == "late":
            columns[name] = grouped["late"].sum().astype(np.int64)
        else:
            columns[name] = values.quantile(_PERCENTILES[name], interpolation="linear")
    result = pd.DataFrame(columns).reset_index()
    result["category"] = result["category"].astype(object)
    if windows.session_gap_ns is not None:
        result.pop("window")
        result["window_end"] = result["last_timestamp"] + windows.session_gap_ns
    elif keys is not None:
        assert windows.length_ns is not None
        result["window_start"] = result.pop("window").astype(np.int64) * windows.length_ns
        result["window_end"] = result["window_start"] + windows.length_ns
    return result


def _session_keys(readings: Readings, gap_ns: int) -> np.ndarray:
    """Each reading's session number: per category in event-time order, a new session wherever a
    reading is ``gap_ns`` or more after the one before it."""
    order = np.lexsort((readings.timestamps_ns, readings.codes))
    times, codes = readings.timestamps_ns[order], readings.codes[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (codes[1:] != codes[:-1]) | (times[1:] - times[:-1] >= gap_ns)
    keys = np.empty(len(order), dtype=np.int64)
    keys[order] = np.cumsum(starts)
    return keys


class _Bounds(BaseIndexer):
    """Window bounds given outright: row ``i`` aggregates rows ``start[i]:end[i]``."""

    def __init__(self, start: np.ndarray, end: np.ndarray) -> None:
        super().__init__()
        self.start, self.end = start, end

    def get_window_bounds(
        self,
        num_values: int = 0,
        min_periods: int | None = None,
        center: bool | None = None,
        closed: str | None = None,
        step: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.start, self.end


def _hopping(readings: Readings, windows: WindowSpec, stats: Sequence[str], max_groups: int | None) -> pd.DataFrame:
    """Hopping windows: each category's readings in event-time order, and each window a slice of
    them, [first reading at or after its start, first reading at or after its end). Counts and
    timestamps come from the slices' ends; the values' statistics from pandas' rolling
    aggregations over the slices, which move through the readings once, whatever the overlap."""
    length, step = windows.length_ns, windows.step
    assert length is not None
    times, codes = readings.timestamps_ns, readings.codes
    ordered = bool(np.all(times[1:] >= times[:-1]))
    order = np.argsort(codes, kind="stable") if ordered else np.lexsort((times, codes))
    times, values, codes = times[order], readings.values[order], codes[order].astype(np.int64)
    panes = (codes << _KEY_SHIFT) + times // step + _KEY_OFFSET
    firsts = np.flatnonzero(np.r_[True, panes[1:] != panes[:-1]])  # each pane's first reading
    pane_keys = panes[firsts]
    # The windows of a pane are the k = length / step ending with it; those of consecutive panes
    # overlap: each pane adds the ones the pane before it did not have.
    k = length // step
    new = np.full(len(pane_keys), k, dtype=np.int64)
    same_category = (pane_keys[1:] >> _KEY_SHIFT) == (pane_keys[:-1] >> _KEY_SHIFT)
    new[1:][same_category] = np.minimum(k, np.diff(pane_keys)[same_category])
    total = int(new.sum())
    if max_groups is not None and total > max_groups and windows.fill is None and not windows.final_only:
        raise TooManyGroups(f"{total} result objects, more than {max_groups}")
    keys = np.repeat(pane_keys - new + 1, new) + np.arange(total) - np.repeat(np.cumsum(new) - new, new)
    boundaries = np.r_[firsts, len(times)]
    lo = boundaries[np.searchsorted(pane_keys, keys)]
    hi = boundaries[np.searchsorted(pane_keys, keys + k)]
    rows = max(len(times), total)
    start = np.full(rows, len(times), dtype=np.int64)
    end = start.copy()
    start[:total], end[:total] = lo, hi
    padded = np.full(rows, np.nan)
    padded[: len(values)] = values
    rolling = pd.Series(padded).rolling(_Bounds(start=start, end=end), min_periods=1)

    def roll(name: str, q: float | None = None) -> np.ndarray:
        out = rolling.quantile(q) if q is not None else getattr(rolling, name)(**({"ddof": 1} if name == "std" else {}))
        return np.asarray(out.to_numpy()[:total])

    window_start = ((keys & ((1 << _KEY_SHIFT) - 1)) - _KEY_OFFSET) * step
    columns: dict[str, object] = {
        "category": np.asarray(readings.categories, dtype=object)[keys >> _KEY_SHIFT],
        "avg_value": roll("mean"),
        "count": hi - lo,
        "last_timestamp": times[hi - 1],
        "window_start": window_start,
        "window_end": window_start + length,
    }
    late = np.r_[0, np.cumsum(_late(readings)[order], dtype=np.int64)] if "late" in stats else None
    for name in stats:
        if name in ("min", "max", "sum", "std"):
            columns[name] = roll(name)
        elif name == "first_timestamp":
            columns[name] = times[lo]
        elif name == "late":
            assert late is not None
            columns[name] = late[hi] - late[lo]
        else:
            columns[name] = roll(name, _PERCENTILES[name])
    return pd.DataFrame(columns)


def _filled(
    result: pd.DataFrame, windows: WindowSpec, stats: Sequence[str], max_groups: int | None, watermark: int
) -> pd.DataFrame:
    """Every window of each category from its first to its last (or from ``since`` to ``until``),
    the empty ones filled as ``windows.fill`` says; TooManyGroups before making more than
    ``max_groups`` rows."""
    step, length = windows.step, windows.length_ns
    assert length is not None
    number = result["window_start"] // step
    first = number.groupby(result["category"]).min()
    last = number.groupby(result["category"]).max()
    if windows.since_ns is not None:
        first[:] = (windows.since_ns - length) // step + 1  # the first window that ends after since
    if windows.until_ns is not None:
        last[:] = -(-windows.until_ns // step) - 1  # the last window that starts before until
    if windows.final_only:  # the last window closed by the watermark
        last = last.clip(upper=(watermark - length - (windows.grace_ns or 0)) // step)
    sizes = (last - first + 1).clip(lower=0)
    total = int(sizes.sum())
    if max_groups is not None and total > max_groups:
        raise TooManyGroups(f"{total} result objects, more than {max_groups}")
    full = pd.MultiIndex.from_arrays(
        [
            np.repeat(sizes.index.to_numpy(dtype=object), sizes.to_numpy()),
            np.repeat(first.to_numpy(), sizes.to_numpy())
            + np.arange(total)
            - np.repeat(np.cumsum(sizes.to_numpy()) - sizes.to_numpy(), sizes.to_numpy()),
        ],
        names=["category", "number"],
    )
    integers = ["count", "last_timestamp", *(name for name in ("first_timestamp", "late") if name in stats)]
    # Nullable integers: the empty windows' gaps must not turn nanoseconds into floats.
    indexed = result.astype(dict.fromkeys(integers, "Int64")).assign(number=number).set_index(["category", "number"])
    filled = indexed.reindex(full).reset_index()
    filled["window_start"] = filled.pop("number") * step
    filled["window_end"] = filled["window_start"] + length
    empty = filled["count"].isna().to_numpy()
    filled["count"] = filled["count"].fillna(0).astype(np.int64)
    if "late" in stats:
        filled["late"] = filled["late"].fillna(0).astype(np.int64)
    values = [name for name in _VALUE_STATS if name in filled]
    times = [name for name in ("last_timestamp", "first_timestamp") if name in filled]
    if windows.fill == "zero":
        filled.loc[empty, values] = 0.0
    elif windows.fill in ("previous", "linear"):
        # Each empty window's neighbours: the nearest non-empty windows of its category before and after.
        position = pd.Series(np.where(empty, np.nan, np.arange(len(filled))))
        by_category = position.groupby(filled["category"].to_numpy(), sort=False)
        before, after = by_category.ffill().to_numpy(), by_category.bfill().to_numpy()
        if windows.fill == "previous":
            rows = np.flatnonzero(empty & ~np.isnan(before))
            for name in values + times:
                filled.loc[rows, name] = filled[name].to_numpy()[before[rows].astype(np.intp)]
        else:
            rows = np.flatnonzero(empty & ~np.isnan(before) & ~np.isnan(after))
            left, right = before[rows].astype(np.intp), after[rows].astype(np.intp)
            share = (rows - left) / (right - left)
            for name in values:
                column = filled[name].to_numpy(np.float64)
                filled.loc[rows, name] = column[left] + (column[right] - column[left]) * share
    for name in times:
        filled[name] = filled[name].fillna(NO_TIME).astype(np.int64)
    filled.attrs["fill"] = windows.fill
    return filled


def aggregate_records(aggregates: pd.DataFrame, stats: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of :func:`aggregate` as JSON-ready dicts: the original four keys, the window
    bounds when there are windows, ``closed`` when asked, then ``stats`` in the order asked (NaN,
    and an empty window's timestamps, become null)."""
    if len(aggregates) == 0:
        return []
    base = processed_records(aggregates)
    if "fill" in aggregates.attrs:  # empty windows: no timestamps, maybe no values
        empty = (aggregates["last_timestamp"] == NO_TIME).to_numpy()
        for record, is_empty in zip(base, empty.tolist(), strict=True):
            if is_empty:
                record["last_timestamp"] = None
                record["avg_value"] = None if math.isnan(record["avg_value"]) else record["avg_value"]
    extra: dict[str, list[Any]] = {}
    if "window_start" in aggregates:
        extra["window_start"] = format_timestamps(aggregates["window_start"].to_numpy(np.int64)).tolist()
        extra["window_end"] = format_timestamps(aggregates["window_end"].to_numpy(np.int64)).tolist()
    if "closed" in aggregates:
        extra["closed"] = aggregates["closed"].astype(bool).tolist()
    for name in stats:
        column = aggregates[name]
        if name == "first_timestamp":
            times = column.to_numpy(np.int64)
            extra[name] = [
                None if t == NO_TIME else text
                for t, text in zip(times.tolist(), format_timestamps(times).tolist(), strict=True)
            ]
        elif name == "late":
            extra[name] = column.to_numpy(np.int64).tolist()
        else:
            numbers = column.to_numpy(np.float64)
            extra[name] = [None if np.isnan(x) else x for x in numbers.tolist()]
    names = list(extra)
    return [
        {**record, **dict(zip(names, row, strict=True))}
        for record, row in zip(base, zip(*extra.values(), strict=True) if names else [()] * len(base), strict=True)
    ]
