"""Rollups: partial aggregates per (category, minute of event time), kept after their readings are evicted.

Every stored reading (generated or written, late ones in the minute of their event time) is added
to the partials of its category and minute (``ingestor/partials.py``: count, sum, min, max, first
and last event time, mean and M2), kept for ``retention_ns`` of event time behind the newest event
time seen. Rows are kept a day at a time, each day's sorted by (category, minute): a day of one
category is at most 1,440 rows of 80 bytes, 115 KB (16 categories for 30 days: 55 MB). Answers
re-key the minutes to buckets of whole minutes; a day wholly inside a query is re-keyed once per
bucket size and cached until it changes.

Categories are numbered here (``codes``), independently of the store's dictionary, which reuses
codes once a name is no longer held: a rollup outlives its readings. Thread-safe: deltas are merged
by a worker thread (``ingestor/rollup_feed.py``) or the journal's writer, queries come from the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ingestor.partials import (
    PARTIAL_FIELDS,
    PartialTable,
    concat_partials,
    empty_partials,
    merge_partials,
    partials_by_bucket,
    rekey,
)

MINUTE_NS = 60 * 1_000_000_000
DAY_MINUTES = 1440
ROW_BYTES = 80


@dataclass(frozen=True, slots=True)
class History:
    """Partials per (category code, bucket), and the names the codes index."""

    partials: PartialTable
    categories: list[str]


class Rollups:
    def __init__(self, retention_ns: int) -> None:
        self.retention_ns = retention_ns
        self._lock = threading.Lock()
        self._names: list[str] = []
        self._codes: dict[str, int] = {}
        self._days: dict[int, PartialTable] = {}
        self._cache: dict[tuple[int, int], PartialTable] = {}
        self._newest_minute: int | None = None
        self.covered_until = 0
        """Readings numbered below this are in the rollups (set by whoever merges deltas)."""

    def codes_of(self, names: Iterable[str]) -> np.ndarray:
        """This module's code of each name, numbering new ones."""
        with self._lock:
            return np.array([self._code_of(name) for name in names], dtype=np.int64)

    def names(self) -> list[str]:
        """The names codes index, in order."""
        with self._lock:
            return list(self._names)

    def _code_of(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self._names)
            self._names.append(name)
        return code

    def delta(
        self, timestamps_ns: np.ndarray, values: np.ndarray, codes: np.ndarray, names: Sequence[str]
    ) -> PartialTable:
        """The partials per (category, minute) of readings whose ``codes`` index ``names`` (pure but
        for numbering new names, and mostly without the GIL: call from any thread)."""
        if not len(timestamps_ns):
            return empty_partials()
        # Grouped by the batch's own codes, renumbered after: a gather over the rows, not the readings.
        rows = partials_by_bucket(timestamps_ns, values, codes, MINUTE_NS)
        used = np.unique(rows.codes)
        mapping = np.zeros(int(used[-1]) + 1, dtype=np.int64)
        mapping[used] = self.codes_of(names[code] for code in used.tolist())
        return merge_partials([replace(rows, codes=mapping[rows.codes])])

    def after_merge(self, delta: PartialTable) -> tuple[PartialTable, int | None]:
        """The rows ``delta`` touches as they are once it is merged, and the first minute kept then
        (what the journal writes; nothing changes here)."""
        with self._lock:
            days = np.floor_divide(delta.keys, DAY_MINUTES)
            touched = [self._days[day] for day in np.unique(days).tolist() if day in self._days]
            old = concat_partials(touched)
            merged = merge_partials([old.take(np.isin(_packed(old), _packed(delta))), delta])
            newest = (
                max(int(delta.keys.max()), self._newest_minute)
                if self._newest_minute is not None
                else int(delta.keys.max())
            )
            return merged, self._first_kept(newest)

    def merge(self, delta: PartialTable) -> None:
        """Add a delta (codes from :meth:`delta`) to the rollups, then drop what retention ends."""
        if not len(delta):
            return
        with self._lock:
            days = np.floor_divide(delta.keys, DAY_MINUTES)
            for day in np.unique(days).tolist():
                rows = delta.take(days == day)
                current = self._days.get(day)
                self._days[day] = _merged_into(current, rows) if current is not None else rows
                self._forget(day)
            newest = int(delta.keys.max())
            if self._newest_minute is None or newest > self._newest_minute:
                self._newest_minute = newest
            self._trim()  # a late reading may have landed before the first minute kept

    def restore(self, categories: Sequence[str], rows: PartialTable) -> None:
        """Start from rows read back from the data directory (codes index ``categories``)."""
        with self._lock:
            self._names, self._codes, self._days, self._cache = [], {}, {}, {}
            self._newest_minute = None
        if len(rows):
            mapping = self.codes_of(categories)
            self.merge(merge_partials([replace(rows, codes=mapping[rows.codes])]))

    def _first_kept(self, newest_minute: int) -> int:
        return newest_minute - self.retention_ns // MINUTE_NS + 1

    def _trim(self) -> None:
        assert self._newest_minute is not None
        first = self._first_kept(self._newest_minute)
        first_day = first // DAY_MINUTES
        for day in [day for day in self._days if day <= first_day]:
            if day < first_day:
                del self._days[day]
            else:
                kept = self._days[day].take(self._days[day].keys >= first)
                if len(kept) != len(self._days[day]):
                    self._days[day] = kept
            self._forget(day)
            if day in self._days and not len(self._days[day]):
                del self._days[day]

    def _forget(self, day: int) -> None:
        for key in [key for key in self._cache if key[0] == day]:
            del self._cache[key]

    @property
    def first_kept_minute(self) -> int | None:
        with self._lock:
            return self._first_kept(self._newest_minute) if self._newest_minute is not None else None

    @property
    def rows(self) -> int:
        with self._lock:
            return sum(len(table) for table in self._days.values())

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(table.nbytes for table in self._days.values())

    def snapshot(self) -> History:
        """Every row kept, per minute (for tests and the journal)."""
        with self._lock:
            return History(concat_partials([self._days[day] for day in sorted(self._days)]), list(self._names))

    def query(self, names: Sequence[str], since_ns: int | None, until_ns: int | None, bucket_minutes: int) -> History:
        """Partials per (category, bucket of ``bucket_minutes`` minutes since the epoch) of the minutes
        that start at or after ``since_ns`` (rounded down to its minute) and before ``until_ns``, of
        the categories ``names`` (all when empty)."""
        if bucket_minutes < 1:
            raise ValueError("bucket_minutes must be at least 1")
        first = None if since_ns is None else since_ns // MINUTE_NS
        stop = None if until_ns is None else -(-until_ns // MINUTE_NS)
        with self._lock:
            wanted = None if not names else np.array([self._codes.get(name, -1) for name in names], dtype=np.int64)
            parts = []
            for day in sorted(self._days):
                if (first is not None and (day + 1) * DAY_MINUTES <= first) or (
                    stop is not None and day * DAY_MINUTES >= stop
                ):
                    continue
                whole = (first is None or day * DAY_MINUTES >= first) and (
                    stop is None or (day + 1) * DAY_MINUTES <= stop
                )
                parts.append(self._rekeyed(day, bucket_minutes, whole, first, stop))
            categories = list(self._names)
        rows = concat_partials(parts)
        if wanted is not None and len(rows):
            rows = rows.take(np.isin(rows.codes, wanted))
        if DAY_MINUTES % bucket_minutes:  # a bucket may straddle two days
            rows = merge_partials([rows])
        return History(rows, categories)

    def _rekeyed(self, day: int, bucket_minutes: int, whole: bool, first: int | None, stop: int | None) -> PartialTable:
        table = self._days[day]
        if not whole:
            keep = np.ones(len(table), bool)
            if first is not None:
                keep &= table.keys >= first
            if stop is not None:
                keep &= table.keys < stop
            table = table.take(keep)
            return rekey(table, np.floor_divide(table.keys, bucket_minutes)) if bucket_minutes > 1 else table
        cached = self._cache.get((day, bucket_minutes))
        if cached is None:
            cached = rekey(table, np.floor_divide(table.keys, bucket_minutes)) if bucket_minutes > 1 else table
            self._cache[(day, bucket_minutes)] = cached
        return cached


def _merged_into(current: PartialTable, rows: PartialTable) -> PartialTable:
    """``current`` (sorted by code and minute) with ``rows`` merged in: the rows it has already are
    updated in place, found by binary search, and only new (category, minute) rows make it sort
    again, which happens once a minute per category at most when readings come in order."""
    held, arriving = _packed(current), _packed(rows)
    position = np.minimum(np.searchsorted(held, arriving), len(held) - 1)
    found = held[position] == arriving
    if found.any():
        index = position[found]
        both = merge_partials([current.take(index), rows.take(found)])
        for name in PARTIAL_FIELDS:
            getattr(current, name)[index] = getattr(both, name)
    if found.all():
        return current
    return merge_partials([current, rows.take(~found)])


def _packed(table: PartialTable) -> np.ndarray:
    """(code, minute) as one int64: minutes since the epoch fit in 33 bits until the year 18,000."""
    packed: np.ndarray = (table.codes << 34) + (table.keys + (1 << 33))
    return packed
