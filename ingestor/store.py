"""A bounded, columnar ring buffer of readings. Knows nothing of gRPC.

Every stored reading gets a sequence number in arrival order: the first reading ever stored is 0,
the next 1, and so on. The buffer holds the newest ``capacity`` of them, so the sequence numbers
held are ``[oldest_sequence, total_ingested)``. Sequence numbers never repeat, which is what lets
pages and exports skip readings evicted while they run instead of repeating others. ``buffered``
and ``evicted`` are counted where readings enter and leave the ring, so ``total_ingested =
buffered + evicted`` is a fact the tests check, not a definition.

Memory: 17 bytes a reading (int64 timestamp, float64 value, uint8 category code) while the
dictionary has given out at most 256 codes, 18 beyond (the codes are widened to uint16 in place of
the uint8 ones), allocated lazily by the operating system as the buffer fills. Exports carry the
codes in the store's width; the journal keeps them as uint16. The dictionary
(``ingestor/categories.py``) drops a name once none of its readings is held.

The store is not thread-safe: the ingestor uses it from its event loop only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ingestor.arrivals import Arrivals
from ingestor.blocks import BLOCK_READINGS, BlockIndex, seal_block
from ingestor.categories import CategoryDictionary
from ingestor.lateness import Lateness

TIMESTAMP_DTYPE = np.dtype("<i8")
VALUE_DTYPE = np.dtype("<f8")
CODE_DTYPE = np.dtype("<u2")
"""Category codes in the ring beyond 256 codes, in the journal, and on the wire when wide."""
NARROW_CODE_DTYPE = np.dtype("u1")
"""Category codes in the ring while the dictionary's codes fit in them."""


@dataclass(frozen=True, slots=True)
class Columns:
    """Readings column by column; the three arrays have the same length."""

    timestamps_ns: np.ndarray
    values: np.ndarray
    codes: np.ndarray
    """uint8 or uint16 indexes into the store's category dictionary."""
    late: np.ndarray | None = None
    """Optional: 1 for each reading whose event time is older than the newest stored before it
    (``ingestor/lateness.py``); set on what the store hands to listeners and on exports that ask."""

    def __len__(self) -> int:
        return len(self.timestamps_ns)


class ReadingStore:
    def __init__(
        self, capacity: int, block_size: int = BLOCK_READINGS, clock: Callable[[], int] = time.time_ns
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._timestamps = np.empty(capacity, dtype=TIMESTAMP_DTYPE)
        self._values = np.empty(capacity, dtype=VALUE_DTYPE)
        self._codes: np.ndarray = np.empty(capacity, dtype=NARROW_CODE_DTYPE)  # widened past 256 codes
        self._total = 0
        self._buffered = 0
        self._evicted = 0
        self.dictionary = CategoryDictionary()
        self.lateness = Lateness(capacity)
        self.blocks = BlockIndex(block_size)
        """Partials of the sealed blocks (``ingestor/blocks.py``), for aggregates without readings."""
        self._clock = clock
        """Wall-clock nanoseconds: when readings arrive, for retention by age."""
        self.arrivals = Arrivals(block_size)
        """When each block's newest reading arrived (``ingestor/arrivals.py``)."""
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
        """Readings held now."""
        return self._buffered

    @property
    def evicted(self) -> int:
        """Readings dropped to make room, counted as they were overwritten (and, after a restore,
        the earlier run's readings that were not restored)."""
        return self._evicted

    @property
    def oldest_sequence(self) -> int:
        """The sequence number of the oldest reading held (``total_ingested`` when none is)."""
        return self._total - self._buffered

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ring's timestamps, values and codes: sequence number ``s`` is held at ``s % capacity``."""
        return self._timestamps, self._values, self._codes

    @property
    def categories(self) -> Sequence[str]:
        """The category dictionary: code i names ``categories[i]`` (see ``ingestor/categories.py``)."""
        return self.dictionary.names

    def encode_categories(self, names: Iterable[str]) -> np.ndarray:
        """Map names to codes, in the width the store holds them, giving codes to new names.

        All or nothing: when the new names would not fit, nothing is added and CategoryLimitError
        is raised. Names are not validated here.
        """
        codes = self.dictionary.encode(names)
        self._fit_codes()
        return codes.astype(self._codes.dtype)

    def pin_categories(self, names: Iterable[str]) -> None:
        """Keep ``names`` in the dictionary until unpinned (a generator's, before its first reading)."""
        self.dictionary.pin(names)
        self._fit_codes()

    def unpin_categories(self, names: Iterable[str]) -> None:
        self.dictionary.unpin(names)

    def log_category_assignments(self) -> None:
        """From now on, keep what the dictionary gives out for :meth:`take_category_assignments`."""
        self.dictionary.log_assignments = True

    def take_category_assignments(self) -> list[tuple[int, str]]:
        """(code, name) given out since the last call, once :meth:`log_category_assignments` was called."""
        return self.dictionary.take_assignments()

    def _fit_codes(self) -> None:
        if self.dictionary.slots > np.iinfo(self._codes.dtype).max + 1:
            self._widen_codes()

    def append(self, columns: Columns) -> None:
        """Store readings whose codes come from :meth:`encode_categories`, evicting the oldest."""
        n = len(columns)
        if not (len(columns.values) == len(columns.codes) == n):
            raise ValueError("columns must have the same length")
        if n == 0:
            return
        if int(columns.codes.max()) >= self.dictionary.slots:
            raise ValueError("category code outside the dictionary")
        # Only the newest `capacity` of a batch can survive it.
        kept = min(n, self._capacity)
        skip = n - kept
        overwritten = max(0, self._buffered + kept - self._capacity)
        evicted_codes = self._codes_of(self.oldest_sequence, self.oldest_sequence + overwritten)
        if overwritten and not skip:
            self.lateness.evicting(self.oldest_sequence + overwritten, self._read_timestamps, *self._held)
        epoch = self.dictionary.epoch
        late = self.lateness.arrived(self._total, columns.timestamps_ns, columns.codes, self.dictionary.names, skip)
        first_seq = self._total + skip
        self.arrivals.mark(first_seq, self._total + n, self._clock())
        for target, source in (
            (self._timestamps, columns.timestamps_ns),
            (self._values, columns.values),
            (self._codes, columns.codes),
        ):
            self._write_ring(target, first_seq, source[skip:])
        self._total += n
        self._buffered += kept - overwritten
        self._evicted += skip + overwritten
        self._forget_blocks()
        # Held first, released second, so that a name both evicted and stored again is never
        # dropped; the readings a batch skips count as stored and evicted at once. Listeners come
        # in between: every code of the batch still names its category.
        self.dictionary.hold(columns.codes)
        if self._listeners:
            published = Columns(columns.timestamps_ns, columns.values, columns.codes, late.view(np.uint8))
            for listener in self._listeners:
                listener(published)
        self.dictionary.release(np.concatenate([evicted_codes, columns.codes[:skip]]))
        if self.dictionary.epoch != epoch:
            self.lateness.forget(lambda name: self.dictionary.code(name) is not None)

    def _codes_of(self, start_seq: int, stop_seq: int) -> np.ndarray:
        runs = [self._codes[index:end] for index, end in self._slots(start_seq, stop_seq)]
        if len(runs) == 1:
            return runs[0].copy()  # the ring is about to be overwritten
        return np.concatenate(runs) if runs else np.empty(0, self._codes.dtype)

    def add_listener(self, listener: Callable[[Columns], None]) -> None:
        """Call ``listener`` with every batch once it is stored, while each of its codes still names
        its category in :attr:`categories` (a batch's skipped readings may drop names right after).
        It must not block or append."""
        self._listeners.append(listener)

    def restore(
        self,
        categories: Sequence[str],
        columns: Columns,
        total_ingested: int,
        arrivals: Sequence[tuple[int, int]] = (),
    ) -> None:
        """Refill an empty store with what an earlier run held: its dictionary, readings and counters.

        ``categories`` name the codes (``""`` at a free code). ``columns`` are that run's newest
        readings, the last one numbered ``total_ingested - 1``; only the newest ``capacity`` of them
        are kept. Older readings that were not given count as evicted, so ``total_ingested =
        buffered + evicted`` holds as before. ``arrivals`` are (end sequence, wall-clock ns) of
        runs of those readings, when they arrived; readings of no run count as arriving now.
        """
        if self._total or self.dictionary.slots:
            raise ValueError("only an empty store can be restored")
        if len(columns) > total_ingested:
            raise ValueError(f"{len(columns)} readings cannot be the newest of {total_ingested}")
        kept = min(len(columns), self._capacity)
        held = Columns(
            columns.timestamps_ns[len(columns) - kept :],
            columns.values[len(columns) - kept :],
            columns.codes[len(columns) - kept :],
        )
        self.dictionary.restore(categories, held.codes)
        self._fit_codes()
        first_seq = total_ingested - kept
        for target, source in zip(self.arrays, (held.timestamps_ns, held.values, held.codes), strict=True):
            self._write_ring(target, first_seq, source)
        self._total = total_ingested
        self._buffered = kept
        self.arrivals.mark(first_seq, total_ingested, self._clock())
        start = first_seq
        for end_seq, arrived_ns in arrivals:
            if end_seq > start:
                self.arrivals.mark(start, end_seq, arrived_ns, replace=True)
                start = end_seq
        self._evicted = total_ingested - kept
        self._forget_blocks()
        # Late readings are counted again over what was recovered (the earlier run's count is not kept).
        self.lateness.arrived(first_seq, held.timestamps_ns, held.codes, self.dictionary.names)

    @property
    def _held(self) -> tuple[int, int]:
        return self.oldest_sequence, self._total

    def _read_timestamps(self, start_seq: int, stop_seq: int) -> np.ndarray:
        runs = [self._timestamps[index:end] for index, end in self._slots(start_seq, stop_seq)]
        return runs[0] if len(runs) == 1 else np.concatenate([np.empty(0, TIMESTAMP_DTYPE), *runs])

    def late_flags(self, sequences: np.ndarray) -> np.ndarray:
        """Late flags (uint8, ``ingestor/lateness.py``) of the held readings with these ascending
        sequence numbers."""
        return self.lateness.flags(sequences, self._read_timestamps, *self._held)

    def _widen_codes(self) -> None:
        """Hold codes as uint16 from now on: the dictionary has outgrown uint8."""
        wide = np.empty(self._capacity, dtype=CODE_DTYPE)
        # Only the slots in use are copied, so the rest of the ring stays untouched (not resident).
        for index, end in self._slots(self.oldest_sequence, self._total):
            wide[index:end] = self._codes[index:end]
        self._codes = wide

    def _write_ring(self, target: np.ndarray, first_seq: int, source: np.ndarray) -> None:
        start = first_seq % self._capacity
        head = min(len(source), self._capacity - start)
        target[start : start + head] = source[:head]
        target[: len(source) - head] = source[head:]

    def clamp(self, start_seq: int, stop_seq: int) -> tuple[int, int]:
        """Narrow ``[start_seq, stop_seq)`` to the sequence numbers held now."""
        start = max(start_seq, self.oldest_sequence)
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

    def block_columns(self, number: int) -> Columns:
        """The readings of block ``number`` held now: views when they are contiguous in the ring
        (valid until the next append), else a copy."""
        size = self.blocks.block_size
        runs = self.views(number * size, (number + 1) * size)
        return runs[0] if len(runs) == 1 else self.read(number * size, (number + 1) * size)

    def seal_pending(self) -> int:
        """Seal every complete, wholly held block not sealed yet, here and now; how many."""
        sealed = 0
        for number in self.blocks.unsealed(self.oldest_sequence, self._total):
            columns = self.block_columns(number)
            block = seal_block(columns.timestamps_ns, columns.values, columns.codes, self.blocks.max_second_rows)
            sealed += self.blocks.add(number, block, self.oldest_sequence)
        return sealed

    def _forget_blocks(self) -> None:
        """Drop what is kept per block for the blocks that lost readings to eviction."""
        self.blocks.evicted_up_to(self.oldest_sequence)
        self.arrivals.forget_before(self.oldest_sequence)

    def expire(self, max_age_ns: int) -> int:
        """Evict, a block at a time from the oldest, the blocks whose newest reading arrived more than
        ``max_age_ns`` ago (by the store's clock): the readings older than that are then at most
        those of one block. How many readings were evicted."""
        cutoff = self._clock() - max_age_ns
        return self.evict_before(self.arrivals.expired_below(cutoff, self.oldest_sequence, self._total))

    def evict_before(self, sequence: int) -> int:
        """Evict every held reading numbered below ``sequence``; how many were."""
        oldest = self.oldest_sequence
        count = min(sequence, self._total) - oldest
        if count <= 0:
            return 0
        evicted_codes = self._codes_of(oldest, oldest + count)
        self.lateness.evicting(oldest + count, self._read_timestamps, *self._held)
        epoch = self.dictionary.epoch
        self._buffered -= count
        self._evicted += count
        self._forget_blocks()
        self.dictionary.release(evicted_codes)
        if self.dictionary.epoch != epoch:
            self.lateness.forget(lambda name: self.dictionary.code(name) is not None)
        return count
