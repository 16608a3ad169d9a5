"""Partial aggregates merged with pandas into /processed-data's rows. Pure data work: no I/O here.

The ingestor answers some queries with partials instead of readings (``ingestor/partials.py``): per
category and key (a bucket of ``key_ns`` nanoseconds of event time: a second, a window's step, a
minute, or none), the count, sum, min, max, first and last event time, and the mean with M2. Merging
them by category (and window) gives the same frame :func:`functions.processing.aggregate` computes
from the readings themselves, so both feed the same records: counts, min, max and timestamps equal,
sums, means and standard deviations to within rounding (a few ulps of the values' magnitude).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from functions.processing import WindowSpec, empty_aggregates, finish_windows
from functions.timestamps import format_timestamps

SECOND_NS = 1_000_000_000
PARTIAL_COLUMNS = ("count", "total", "minimum", "maximum", "first_ns", "last_ns", "mean", "m2")
"""A partial row's numbers, after its ``category`` and ``key``."""
MERGEABLE_STATS = frozenset({"min", "max", "sum", "std", "first_timestamp"})
"""The extra statistics partials carry exactly; percentiles and ``late`` need the readings."""


def empty_partial_frame() -> pd.DataFrame:
    ints, floats = np.empty(0, np.int64), np.empty(0, np.float64)
    columns = {"category": np.empty(0, object), "key": ints}
    for name in PARTIAL_COLUMNS:
        columns[name] = ints if name in ("count", "first_ns", "last_ns") else floats
    return pd.DataFrame(columns)


def mergeable(windows: WindowSpec | None, stats: Sequence[str]) -> bool:
    """Whether partials answer this query exactly: per category, or tumbling or hopping windows
    (whole seconds, as every window the API takes), with statistics partials carry."""
    if not set(stats) <= MERGEABLE_STATS:
        return False
    if windows is None or windows.length_ns is None:
        return windows is None or windows.session_gap_ns is None
    return windows.length_ns % SECOND_NS == 0 and windows.step % SECOND_NS == 0


def key_ns_for(windows: WindowSpec | None) -> int:
    """The bucket of event time to ask partials for: the step of the windows (their length when
    tumbling), or 0 (one bucket) without windows."""
    if windows is None or windows.length_ns is None:
        return 0
    return windows.step


def merge_partial_frame(rows: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """:func:`merge_partial_columns` as a frame."""
    return pd.DataFrame(merge_partial_columns(rows, by))


def merge_partial_columns(rows: pd.DataFrame, by: Sequence[str]) -> dict[str, np.ndarray]:
    """Partial rows merged into one row per ``by`` group, in order of first appearance, with the
    ``by`` columns and the partial columns: counts and sums added, min of mins, max of maxes,
    earliest first, latest last; mean and M2 with Chan's formula for k parts: the mean of the whole
    (corrected by the parts' weighted deviations from it), then M2 = sum of M2_i + sum of
    n_i (mean_i - mean)^2.

    Groups are found with ``pandas.factorize`` and reduced with numpy (``bincount``, ``ufunc.at``):
    on the few hundred rows partials come in, a groupby's fixed cost per call would dominate.
    """
    group, firsts = _groups(rows, by)
    k = len(firsts)

    def column(name: str) -> np.ndarray:
        values: np.ndarray = rows[name].to_numpy()
        return values

    def reduced(ufunc: np.ufunc, name: str) -> np.ndarray:
        values = column(name)
        out: np.ndarray = values[firsts].copy()
        ufunc.at(out, group, values)
        return out

    count = np.bincount(group, column("count").astype(np.float64), k).astype(np.int64)
    weights = column("count").astype(np.float64)
    total = np.bincount(group, column("total").astype(np.float64), k)
    means = column("mean").astype(np.float64)
    first_mean = total / count
    mean = first_mean + np.bincount(group, weights * (means - first_mean[group]), k) / count
    deviation = means - mean[group]
    m2 = np.bincount(group, column("m2").astype(np.float64), k) + np.bincount(group, weights * deviation * deviation, k)
    minimum, maximum = reduced(np.minimum, "minimum"), reduced(np.maximum, "maximum")
    constant = minimum == maximum
    return {
        **{name: column(name)[firsts] for name in by},
        "count": count,
        "total": total,
        "minimum": minimum,
        "maximum": maximum,
        "first_ns": reduced(np.minimum, "first_ns"),
        "last_ns": reduced(np.maximum, "last_ns"),
        "mean": np.where(constant, minimum, mean),
        "m2": np.where(constant, 0.0, m2),
    }


def _groups(rows: pd.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group number (in order of first appearance) and each group's first row."""
    group = np.zeros(len(rows), np.int64)
    for name in by:
        codes, uniques = pd.factorize(rows[name].to_numpy())
        group = group * len(uniques) + codes
    group, _ = pd.factorize(group)
    firsts = np.full(int(group.max()) + 1 if len(group) else 0, len(group), np.int64)
    np.minimum.at(firsts, group, np.arange(len(group)))
    return group, firsts


def _with_windows(rows: pd.DataFrame, key_ns: int, windows: WindowSpec) -> pd.DataFrame:
    """The rows with the number of each window they fall in (``window``: its start over the step),
    a row repeated for each of the ``length / step`` windows it falls in when hopping."""
    assert windows.length_ns is not None
    step = windows.step
    if key_ns <= 0 or step % key_ns:
        raise ValueError(f"buckets of {key_ns} ns do not divide windows every {step} ns")
    panes = rows["key"].to_numpy(np.int64) * key_ns // step
    k = windows.length_ns // step
    if k == 1:
        return rows.assign(window=panes)
    repeated = rows.loc[rows.index.repeat(k)].reset_index(drop=True)
    return repeated.assign(window=np.repeat(panes, k) - np.tile(np.arange(k, dtype=np.int64), len(rows)))


def aggregate_partials(
    rows: pd.DataFrame,
    key_ns: int,
    *,
    windows: WindowSpec | None = None,
    stats: Sequence[str] = (),
    max_groups: int | None = None,
) -> pd.DataFrame:
    """The frame :func:`functions.processing.aggregate` makes from readings, made from their
    partials (``rows``: ``category``, ``key`` in buckets of ``key_ns``, and PARTIAL_COLUMNS).

    Only for what :func:`mergeable` accepts. TooManyGroups as ``aggregate`` raises it.
    """
    if windows is None:
        windows = WindowSpec()
    if len(rows) == 0:
        return empty_aggregates(windows, stats)
    windowed = windows.length_ns is not None
    if windowed:
        rows = _with_windows(rows, key_ns, windows)
    merged = merge_partial_columns(rows, ["window", "category"] if windowed else ["category"])
    count = merged["count"]
    columns: dict[str, object] = {
        "category": merged["category"].astype(object),
        "avg_value": merged["total"] / count,
        "count": count,
        "last_timestamp": merged["last_ns"],
    }
    if windowed:
        assert windows.length_ns is not None
        start = merged["window"].astype(np.int64) * windows.step
        columns["window_start"], columns["window_end"] = start, start + windows.length_ns
    for name in stats:
        if name == "min":
            columns[name] = merged["minimum"]
        elif name == "max":
            columns[name] = merged["maximum"]
        elif name == "sum":
            columns[name] = merged["total"]
        elif name == "std":
            with np.errstate(divide="ignore", invalid="ignore"):
                variance = merged["m2"] / (count - 1)
            columns[name] = np.where(count >= 2, np.sqrt(np.maximum(variance, 0.0)), np.nan)
        elif name == "first_timestamp":
            columns[name] = merged["first_ns"]
        else:
            raise ValueError(f"{name} cannot be merged from partials")
    watermark = int(merged["last_ns"].max())
    if not windowed:  # in the order finish_windows sorts into: it then has nothing to move
        order = np.argsort(columns["category"], kind="stable")  # type: ignore[arg-type]
        columns = {name: np.asarray(values)[order] for name, values in columns.items()}
    return finish_windows(pd.DataFrame(columns), windows, stats, max_groups, watermark)


def aggregate_partials_by_category(rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`functions.processing.aggregate_by_category`'s frame, from partials."""
    if len(rows) == 0:
        return pd.DataFrame({"category": [], "avg_value": [], "count": [], "last_timestamp": []})
    return aggregate_partials(rows, 0)  # without windows or stats: exactly those four columns


def by_category_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """``processed_records(aggregate_partials_by_category(rows))``, the seed answer, straight from
    the merged columns: no frame to build and sort for a handful of categories."""
    if len(rows) == 0:
        return []
    merged = merge_partial_columns(rows, ["category"])
    order = np.argsort(merged["category"].astype(str), kind="stable")
    count = merged["count"][order]
    return [
        {"category": category, "avg_value": avg, "count": n, "last_timestamp": last}
        for category, avg, n, last in zip(
            merged["category"][order].tolist(),
            (merged["total"][order] / count).tolist(),
            count.tolist(),
            format_timestamps(merged["last_ns"][order].astype(np.int64)).tolist(),
            strict=True,
        )
    ]
