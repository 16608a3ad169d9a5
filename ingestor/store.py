"""A bounded, columnar ring buffer of readings. Knows nothing of gRPC.

Every stored reading gets a sequence number in arrival order: the first reading ever stored is 0,
the next 1, and so on. The buffer holds the newest ``capacity`` of them, so the sequence numbers
held are ``[evicted, total_ingested)``. Sequence numbers never repeat, which is what lets pages and
exports skip readings evicted while they run instead of repeating others.

Memory: 17 bytes a reading (int64 timestamp, float64 value, uint8 category code) while the
dictionary holds at most 256 categories, 18 once it holds more (the codes are widened to uint16 in
place of the uint8 ones), allocated lazily by the operating system as the buffer fills. Exports
carry the codes in the store's width; the journal keeps them as uint16.

The store is not thread-safe: the ingestor uses it from its event loop only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

MAX_CATEGORIES = 65_536
"""Category codes are at most uint16."""

CATEGORY_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")

TIMESTAMP_DTYPE = np.dtype("<i8")
VALUE_DTYPE = np.dtype("<f8")
CODE_DTYPE = np.dtype("<u2")
"""Category codes in the ring beyond 256 categories, in the journal, and on the wire when wide."""
NARROW_CODE_DTYPE = np.dtype("u1")
"""Category codes in the ring while the dictionary fits in them."""


def validate_category(name: str) -> str | None:
    """Return why ``name`` is not a valid category, or None when it is."""
    if CATEGORY_PATTERN.fullmatch(name) is None:
        return f"category {name[:80]!r} must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '.', '-'"
    return None


class CategoryLimitError(Exception):
    """Storing a batch would take the store past MAX_CATEGORIES distinct categories."""


@dataclass(frozen=True, slots=True)
class Columns:
    """Readings column by column; the three arrays have the same length."""

    timestamps_ns: np.ndarray
    values: np.ndarray
    codes: np.ndarray
    """uint8 or uint16 indexes into the store's category dictionary."""

    def __len__(self) -> int:
        return len(self.timestamps_ns)


class ReadingStore:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._timestamps = np.empty(capacity, dtype=TIMESTAMP_DTYPE)
        self._values = np.empty(capacity, dtype=VALUE_DTYPE)
        self._codes = np.empty(capacity, dtype=NARROW_CODE_DTYPE)
        self._total = 0
        # The oldest sequence number that may be held: above 0 only after restore() was given fewer
        # readings than the buffer holds (e.g. the capacity grew between two runs).
        self._oldest = 0
        self._categories: list[str] = []
        self._codes_by_name: dict[str, int] = {}
        self._listeners: list[Callable[[Columns], None]] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def total_ingested(self) -> int:
        """Readings ever stored; also the sequence number the next reading will get."""
        return self._total

    @property
    def buffered(self) -> int:
        return min(self._total - self._oldest, self._capacity)

    @property
    def evicted(self) -> int:
        """Readings dropped to make room; also the sequence number of the oldest one held."""
        return self._total - self.buffered

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ring's timestamps, values and codes: sequence number ``s`` is held at ``s % capacity``."""
        return self._timestamps, self._values, self._codes

    @property
    def categories(self) -> Sequence[str]:
        """The category dictionary: code i names ``categories[i]``. It only ever grows."""
        return self._categories

    def encode_categories(self, names: Iterable[str]) -> np.ndarray:
        """Map names to codes, in the width the store holds them, adding new names to the dictionary.

        All or nothing: when the new names would not fit, nothing is added and CategoryLimitError
        is raised. Names are not validated here.
        """
        names = list(names)
        new = list(dict.fromkeys(name for name in names if name not in self._codes_by_name))
        if len(self._categories) + len(new) > MAX_CATEGORIES:
            raise CategoryLimitError(
                f"the store holds {len(self._categories)} distinct categories and this batch adds "
                f"{len(new)}: at most {MAX_CATEGORIES} are allowed"
            )
        for name in new:
            self._codes_by_name[name] = len(self._categories)
            self._categories.append(name)
        if len(self._categories) > np.iinfo(self._codes.dtype).max + 1:
            self._widen_codes()
        return np.fromiter((self._codes_by_name[name] for name in names), dtype=self._codes.dtype, count=len(names))

    def append(self, columns: Columns) -> None:
        """Store readings whose codes come from :meth:`encode_categories`, evicting the oldest."""
        n = len(columns)
        if not (len(columns.values) == len(columns.codes) == n):
            raise ValueError("columns must have the same length")
        if n == 0:
            return
        if int(columns.codes.max()) >= len(self._categories):
            raise ValueError("category code outside the dictionary")
        # Only the newest `capacity` of a batch can survive it.
        skip = max(0, n - self._capacity)
        first_seq = self._total + skip
        for target, source in (
            (self._timestamps, columns.timestamps_ns),
            (self._values, columns.values),
            (self._codes, columns.codes),
        ):
            self._write_ring(target, first_seq, source[skip:])
        self._total += n
        for listener in self._listeners:
            listener(columns)

    def add_listener(self, listener: Callable[[Columns], None]) -> None:
        """Call ``listener`` with every batch once it is stored. It must not block or append."""
        self._listeners.append(listener)

    def restore(self, categories: Sequence[str], columns: Columns, total_ingested: int) -> None:
        """Refill an empty store with what an earlier run held: its dictionary, readings and counters.

        ``columns`` are that run's newest readings, the last one numbered ``total_ingested - 1``; only
        the newest ``capacity`` of them are kept. Older readings that were not given count as evicted,
        so ``total_ingested = buffered + evicted`` holds as before.
        """
        if self._total or self._categories:
            raise ValueError("only an empty store can be restored")
        if len(columns) > total_ingested:
            raise ValueError(f"{len(columns)} readings cannot be the newest of {total_ingested}")
        if len(columns) and int(columns.codes.max()) >= len(categories):
            raise ValueError("category code outside the dictionary")
        self.encode_categories(categories)
        kept = min(len(columns), self._capacity)
        first_seq = total_ingested - kept
        for target, source in (
            (self._timestamps, columns.timestamps_ns),
            (self._values, columns.values),
            (self._codes, columns.codes),
        ):
            self._write_ring(target, first_seq, source[len(source) - kept :])
        self._total = total_ingested
        self._oldest = first_seq

    def _widen_codes(self) -> None:
        """Hold codes as uint16 from now on: the dictionary has outgrown uint8."""
        wide = np.empty(self._capacity, dtype=CODE_DTYPE)
        # Only the slots in use are copied, so the rest of the ring stays untouched (not resident).
        for index, end in self._slots(self.evicted, self._total):
            wide[index:end] = self._codes[index:end]
        self._codes = wide

    def _write_ring(self, target: np.ndarray, first_seq: int, source: np.ndarray) -> None:
        start = first_seq % self._capacity
        head = min(len(source), self._capacity - start)
        target[start : start + head] = source[:head]
        target[: len(source) - head] = source[head:]

    def clamp(self, start_seq: int, stop_seq: int) -> tuple[int, int]:
        """Narrow ``[start_seq, stop_seq)`` to the sequence numbers held now."""
        start = max(start_seq, self.evicted)
        stop = min(stop_seq, self._total)
        return start, max(start, stop)

    def views(self, start_seq: int, stop_seq: int) -> list[Columns]:
        """Views of the readings held in ``[start_seq, stop_seq)``, oldest first, one per contiguous run.

        The views share memory with the buffer and are valid only until the next append: copy
        what must outlive that.
        """
        return [
            Columns(self._timestamps[index:end], self._values[index:end], self._codes[index:end])
            for index, end in self._slots(start_seq, stop_seq)
        ]

    def _slots(self, start_seq: int, stop_seq: int) -> list[tuple[int, int]]:
        """The ring's index ranges holding ``[start_seq, stop_seq)`` (clamped), oldest first."""
        start, stop = self.clamp(start_seq, stop_seq)
        ranges: list[tuple[int, int]] = []
        while start < stop:
            index = start % self._capacity
            length = min(stop - start, self._capacity - index)
            ranges.append((index, index + length))
            start += length
        return ranges

    def read(self, start_seq: int, stop_seq: int) -> Columns:
        """A copy of the readings held in ``[start_seq, stop_seq)``, oldest first."""
        runs = self.views(start_seq, stop_seq)
        if not runs:
            return Columns(np.empty(0, TIMESTAMP_DTYPE), np.empty(0, VALUE_DTYPE), np.empty(0, self._codes.dtype))
        return Columns(
            np.concatenate([run.timestamps_ns for run in runs]),
            np.concatenate([run.values for run in runs]),
            np.concatenate([run.codes for run in runs]),
        )
