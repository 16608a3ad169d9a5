"""Mergeable partial aggregates of readings, grouped by (category code, key), with numpy and one
compiled pass (``ingestor/bucket_partials.pyx``) for the grouping every stored reading goes through.

A partial holds, per group, what exact merging needs: the count, the sum, the min and max value,
the first and last event time, and the mean with M2 (the sum of squared deviations from the mean),
so that a standard deviation comes out numerically stable when partials are merged (Chan, Golub and
LeVeque's parallel formula, not a sum of squares). The key is whatever the caller groups by: a
second (``timestamps // 10**9``), a minute, a window number, a block number, or one constant for
"per category". Knows nothing of the store or gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from ingestor.bucket_partials import bucket_partials

SECOND_NS = 1_000_000_000
_KEY_BITS = 40
"""A group's code and key packed into one int64: code << 40 | (key - smallest key), when keys
span less than 2**40 (any key of seconds or coarser does) and codes are below 2**23."""


@dataclass(frozen=True, slots=True)
class PartialTable:
    """One row per (code, key), sorted by code then key; every array has the same length."""

    codes: np.ndarray
    """int64 category codes."""
    keys: np.ndarray
    """int64 group keys (seconds, minutes, window numbers...)."""
    count: np.ndarray
    """int64, at least 1 in every row."""
    total: np.ndarray
    """float64 sum of the values."""
    minimum: np.ndarray
    maximum: np.ndarray
    first_ns: np.ndarray
    """int64 earliest event time."""
    last_ns: np.ndarray
    """int64 latest event time."""
    mean: np.ndarray
    m2: np.ndarray
    """float64 sum of squared deviations from ``mean``."""

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in PARTIAL_FIELDS)

    def take(self, rows: np.ndarray) -> PartialTable:
        """The rows selected by a boolean mask or an index array (their order kept)."""
        return PartialTable(**{name: getattr(self, name)[rows] for name in PARTIAL_FIELDS})

    def with_keys(self, keys: np.ndarray) -> PartialTable:
        """The same rows under other keys (not merged: see :func:`rekey`)."""
        return PartialTable(**{**{name: getattr(self, name) for name in PARTIAL_FIELDS}, "keys": keys})


PARTIAL_FIELDS = tuple(field.name for field in fields(PartialTable))


def empty_partials() -> PartialTable:
    ints, floats = np.empty(0, np.int64), np.empty(0, np.float64)
    return PartialTable(ints, ints, ints, floats, floats, floats, ints, ints, floats, floats)


def second_keys(timestamps_ns: np.ndarray, seconds: int = 1) -> np.ndarray:
    """Each event time's bucket of ``seconds`` seconds since the epoch (floor, so before 1970 too)."""
    return np.asarray(timestamps_ns, dtype=np.int64) // (seconds * SECOND_NS)


def _group_starts(codes: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An order that sorts the rows by (code, key), stably, and where each group starts in it."""
    codes = codes.astype(np.int64, copy=False)
    cells = _small_box(codes, keys)
    if cells is not None:
        # A stable sort of 16-bit numbers is a radix sort in numpy: linear, about five times
        # quicker than sorting the same groups as int64.
        order = np.argsort(cells, kind="stable")
        cells = cells[order]
        return order, np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    if len(keys) and int(keys.max()) - int(keys.min()) < (1 << _KEY_BITS) and int(codes.max()) < (1 << 22):
        packed = (codes << _KEY_BITS) + (keys - keys.min())
        order = np.argsort(packed, kind="stable")
        packed = packed[order]
        starts = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1]])
    else:
        order = np.lexsort((keys, codes))
        c, k = codes[order], keys[order]
        starts = np.flatnonzero(np.r_[True, (c[1:] != c[:-1]) | (k[1:] != k[:-1])])
    return order, starts


def _small_box(codes: np.ndarray, keys: np.ndarray) -> np.ndarray | None:
    """When the (code, key) pairs fall in a box of at most 2**16 cells (a few categories over a few
    keys: a batch's minutes or seconds), each row's cell as uint16, numbered in (code, key) order."""
    if not len(codes):
        return None
    low_code, high_code = int(codes.min()), int(codes.max())
    low_key, high_key = int(keys.min()), int(keys.max())
    span = high_key - low_key + 1
    if (high_code - low_code + 1) * span > 1 << 16:
        return None
    cells: np.ndarray = codes - low_code if span == 1 else (codes - low_code) * span + (keys - low_key)
    return cells.astype(np.uint16)


def compute_partials(
    timestamps_ns: np.ndarray, values: np.ndarray, codes: np.ndarray, keys: np.ndarray | None = None
) -> PartialTable:
    """The partials of readings grouped by (code, key); ``keys`` None groups by code alone (key 0).

    Sums and means use the corrected two-pass algorithm: the residuals from a first mean are summed
    again, which brings the sum, the mean and M2 to within a few ulps of the values' magnitude.
    """
    n = len(timestamps_ns)
    if n == 0:
        return empty_partials()
    keys = np.zeros(n, np.int64) if keys is None else np.asarray(keys, dtype=np.int64)
    order, starts = _group_starts(codes, keys)
    times = np.asarray(timestamps_ns, dtype=np.int64)[order]
    sorted_values = np.asarray(values, dtype=np.float64)[order]
    count = np.diff(np.r_[starts, n])
    first_sum = np.add.reduceat(sorted_values, starts)
    first_mean = first_sum / count
    residuals = sorted_values - np.repeat(first_mean, count)
    correction = np.add.reduceat(residuals, starts)
    minimum = np.minimum.reduceat(sorted_values, starts)
    maximum = np.maximum.reduceat(sorted_values, starts)
    m2 = np.maximum(np.add.reduceat(residuals * residuals, starts) - correction * correction / count, 0.0)
    mean = first_mean + correction / count
    constant = minimum == maximum  # exactly: no rounding left in a group of equal values
    heads = order[starts]
    return PartialTable(
        codes=np.asarray(codes, dtype=np.int64)[heads],
        keys=keys[heads],
        count=count.astype(np.int64),
        total=first_sum + correction,
        minimum=minimum,
        maximum=maximum,
        first_ns=np.minimum.reduceat(times, starts),
        last_ns=np.maximum.reduceat(times, starts),
        mean=np.where(constant, minimum, mean),
        m2=np.where(constant, 0.0, m2),
    )


def partials_by_bucket(
    timestamps_ns: np.ndarray, values: np.ndarray, codes: np.ndarray, bucket_ns: int
) -> PartialTable:
    """The partials of readings grouped by (code, ``floor(timestamp / bucket_ns)``): what
    :func:`compute_partials` gives for those keys, in one compiled call that lets go of the GIL
    (``ingestor/bucket_partials.pyx``) when the box of codes and buckets has at most 2**16 cells."""
    if len(timestamps_ns) == 0:
        return empty_partials()
    timestamps_ns = np.ascontiguousarray(timestamps_ns, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    codes = np.ascontiguousarray(codes)
    if codes.dtype not in (np.uint8, np.uint16):
        codes = codes.astype(np.int64)
    columns = bucket_partials(timestamps_ns, values, codes, bucket_ns, 1 << 16)
    if columns is None:
        return compute_partials(timestamps_ns, values, codes, np.floor_divide(timestamps_ns, bucket_ns))
    return PartialTable(*columns)


def concat_partials(tables: Sequence[PartialTable]) -> PartialTable:
    """The rows of several tables one after another, not merged."""
    tables = [table for table in tables if len(table)]
    if not tables:
        return empty_partials()
    if len(tables) == 1:
        return tables[0]
    return PartialTable(**{name: np.concatenate([getattr(t, name) for t in tables]) for name in PARTIAL_FIELDS})


def merge_partials(tables: Sequence[PartialTable]) -> PartialTable:
    """One row per (code, key) from the rows of all ``tables``, merged exactly.

    Counts and sums add, min of mins, max of maxes, earliest first and latest last; mean and M2
    with Chan's formula for k parts: the mean of the whole, then M2 = sum of the parts' M2 plus
    sum of n_i (mean_i - mean)^2.
    """
    rows = concat_partials(tables)
    if len(rows) == 0:
        return rows
    order, starts = _group_starts(rows.codes, rows.keys)
    if len(starts) == len(rows):  # nothing to merge, only to sort
        return rows.take(order)
    sorted_rows = rows.take(order)
    parts = np.diff(np.r_[starts, len(rows)])
    group = np.repeat(np.arange(len(starts)), parts)
    count = np.add.reduceat(sorted_rows.count, starts)
    total = np.add.reduceat(sorted_rows.total, starts)
    weights = sorted_rows.count.astype(np.float64)
    first_mean = total / count
    deviation = sorted_rows.mean - first_mean[group]
    mean = first_mean + np.add.reduceat(weights * deviation, starts) / count
    deviation = sorted_rows.mean - mean[group]
    m2 = np.add.reduceat(sorted_rows.m2, starts) + np.add.reduceat(weights * deviation * deviation, starts)
    minimum = np.minimum.reduceat(sorted_rows.minimum, starts)
    maximum = np.maximum.reduceat(sorted_rows.maximum, starts)
    constant = minimum == maximum
    return PartialTable(
        codes=sorted_rows.codes[starts],
        keys=sorted_rows.keys[starts],
        count=count,
        total=total,
        minimum=minimum,
        maximum=maximum,
        first_ns=np.minimum.reduceat(sorted_rows.first_ns, starts),
        last_ns=np.maximum.reduceat(sorted_rows.last_ns, starts),
        mean=np.where(constant, minimum, mean),
        m2=np.where(constant, 0.0, m2),
    )


def rekey(table: PartialTable, keys: np.ndarray) -> PartialTable:
    """The table's rows under new keys (one per row), merged: seconds into minutes, for example
    ``rekey(table, table.keys // 60)``; ``np.zeros`` merges each category's rows into one."""
    return merge_partials([table.with_keys(np.asarray(keys, dtype=np.int64))])
