"""Late readings: those whose event time is older than the newest event time stored before them.

The watermark is the newest event time stored so far. A reading that arrives with an older event
time is late: it is counted (in total and per category) when it is stored, and its flag can be
recomputed later for any reading still held, without a flag kept per reading: the watermark is
kept at the start of every block of ``BLOCK`` sequence numbers (and at the oldest reading held),
so the flag of reading ``s`` is a running maximum over at most ``BLOCK`` readings before it.
Memory: 8 bytes per block, 2 KB per million readings. Knows nothing of gRPC.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

BLOCK = 4096
NO_WATERMARK = np.iinfo(np.int64).min
"""The watermark before any reading: no event time is older."""

ReadTimestamps = Callable[[int, int], np.ndarray]
"""The event times of the readings held in [start_seq, stop_seq), oldest first (a copy)."""


def watermarks_before(base: int, timestamps: np.ndarray) -> np.ndarray:
    """For each reading, the newest event time among ``base`` and the readings before it."""
    before = np.empty(len(timestamps), dtype=np.int64)
    if len(timestamps):
        before[0] = base
        np.maximum.accumulate(timestamps[:-1], out=before[1:])
        np.maximum(before, base, out=before)
    return before


class Lateness:
    """The watermark of a ring of ``capacity`` readings, its late counts, and late flags on demand."""

    def __init__(self, capacity: int) -> None:
        self.watermark = int(NO_WATERMARK)
        self.late = 0
        """Late readings stored since the start (since the restore, in durable mode)."""
        self.by_category: Counter[str] = Counter()
        self._blocks = np.full(capacity // BLOCK + 3, NO_WATERMARK, dtype=np.int64)
        self._oldest_mark = int(NO_WATERMARK)
        """The watermark at the oldest reading held."""

    def arrived(
        self, first_seq: int, timestamps: np.ndarray, codes: np.ndarray, names: Sequence[str], skip: int = 0
    ) -> np.ndarray:
        """Account for a batch numbered from ``first_seq`` (codes naming ``names``), whose first ``skip``
        readings do not fit in the ring; its late flags (bool)."""
        if not len(timestamps):
            return np.zeros(0, dtype=bool)
        before = watermarks_before(self.watermark, timestamps)
        late = timestamps < before
        if skip:
            self._oldest_mark = int(before[skip])
        first_block = -(-first_seq // BLOCK)
        stop_block = (first_seq + len(timestamps) - 1) // BLOCK + 1
        for block in range(max(first_block, stop_block - len(self._blocks)), stop_block):
            self._blocks[block % len(self._blocks)] = before[block * BLOCK - first_seq]
        self.watermark = max(self.watermark, int(timestamps.max()))
        count = int(np.count_nonzero(late))
        if count:
            self.late += count
            counts = np.bincount(codes[late])
            for code in np.flatnonzero(counts).tolist():
                self.by_category[names[code]] += int(counts[code])
        return late

    def evicting(self, new_oldest: int, read: ReadTimestamps, oldest: int, stop: int) -> None:
        """Readings ``[oldest, new_oldest)`` of the ``[oldest, stop)`` held are about to be evicted (and
        are still readable); called before the batch that evicts them arrives."""
        self._oldest_mark = self.mark(new_oldest, read, oldest, stop)

    def mark(self, seq: int, read: ReadTimestamps, oldest: int, stop: int) -> int:
        """The watermark just before reading ``seq`` of the ``[oldest, stop)`` held."""
        if seq >= stop:
            return self.watermark
        start = seq - seq % BLOCK
        base = int(self._blocks[(seq // BLOCK) % len(self._blocks)]) if start >= oldest else self._oldest_mark
        start = max(start, oldest)
        return max(base, int(read(start, seq).max())) if seq > start else base

    def flags(self, sequences: np.ndarray, read: ReadTimestamps, oldest: int, stop: int) -> np.ndarray:
        """Late flags (uint8) of held readings with these ascending sequence numbers."""
        if not len(sequences):
            return np.zeros(0, dtype=np.uint8)
        first, last = int(sequences[0]), int(sequences[-1])
        base = self.mark(first, read, oldest, stop)
        timestamps = read(first, last + 1)
        positions = sequences - first
        late: np.ndarray = timestamps[positions] < watermarks_before(base, timestamps)[positions]
        return late.astype(np.uint8)

    def forget(self, in_use: Callable[[str], bool]) -> None:
        """Drop the counts of categories no longer in use (their readings all evicted)."""
        for name in [name for name in self.by_category if not in_use(name)]:
            del self.by_category[name]
