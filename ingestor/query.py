"""Filtered selection over the ring buffer with numpy masks, by sequence number. Knows nothing of gRPC.

A selection is a sorted array of sequence numbers. Gathering it later skips whatever was evicted
meanwhile, so a page or an export never repeats a reading and never returns one that was replaced.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ingestor.store import Columns, ReadingStore

SEQUENCE_DTYPE = np.dtype(np.int64)


@dataclass(frozen=True, slots=True)
class ReadingFilter:
    """Which readings match: any of ``categories`` (all when empty), event time in [since, until)."""

    categories: frozenset[str] = frozenset()
    since_ns: int | None = None
    until_ns: int | None = None

    @property
    def selects_all(self) -> bool:
        return not self.categories and self.since_ns is None and self.until_ns is None

    def fingerprint(self) -> int:
        """A stable 32-bit digest of the filter, to bind page tokens to it."""
        canonical = f"{sorted(self.categories)}|{self.since_ns}|{self.until_ns}"
        return zlib.crc32(canonical.encode())

    def code_mask(self, store: ReadingStore) -> np.ndarray | None:
        """A lookup table code -> wanted, or None when every category is wanted."""
        if not self.categories:
            return None
        dictionary = store.dictionary
        wanted = np.zeros(dictionary.slots + 1, dtype=bool)  # +1: never empty, even with no dictionary yet
        for name in self.categories:
            code = dictionary.code(name)
            if code is not None:
                wanted[code] = True
        return wanted

    def mask(self, columns: Columns, code_mask: np.ndarray | None) -> np.ndarray:
        """True for each reading of ``columns`` that matches."""
        keep = np.ones(len(columns), dtype=bool) if code_mask is None else code_mask[columns.codes]
        if self.since_ns is not None:
            keep &= columns.timestamps_ns >= self.since_ns
        if self.until_ns is not None:
            keep &= columns.timestamps_ns < self.until_ns
        return keep


def matching_sequences(store: ReadingStore, flt: ReadingFilter, start_seq: int, stop_seq: int) -> np.ndarray:
    """Sequence numbers in ``[start_seq, stop_seq)`` held now whose reading matches, ascending."""
    start, stop = store.clamp(start_seq, stop_seq)
    code_mask = flt.code_mask(store)
    found: list[np.ndarray] = []
    for run in store.views(start, stop):
        found.append(np.flatnonzero(flt.mask(run, code_mask)).astype(SEQUENCE_DTYPE) + start)
        start += len(run)
    return np.concatenate(found) if found else np.empty(0, SEQUENCE_DTYPE)


@dataclass(frozen=True, slots=True)
class Page:
    sequences: np.ndarray
    """The selected sequence numbers, ascending."""
    next_sequence: int | None
    """Where the next page continues (a bound for the following call), None when nothing is left."""


def select_page(
    store: ReadingStore,
    flt: ReadingFilter,
    *,
    after_seq: int = 0,
    before_seq: int | None = None,
    limit: int = 0,
    oldest_first: bool = False,
) -> Page:
    """At most ``limit`` (0: no limit) matches in ``[after_seq, before_seq)``: the newest, or the oldest.

    Newest first continues below the oldest selected reading (``before_seq = next_sequence``);
    oldest first continues above the newest one (``after_seq = next_sequence``).
    """
    stop = store.total_ingested if before_seq is None else before_seq
    if flt.selects_all:
        # Every held reading matches: the page is a range, found without a pass over the buffer.
        start, stop = store.clamp(after_seq, stop)
        if not limit or stop - start <= limit:
            return Page(np.arange(start, stop, dtype=SEQUENCE_DTYPE), None)
        if oldest_first:
            return Page(np.arange(start, start + limit, dtype=SEQUENCE_DTYPE), start + limit)
        return Page(np.arange(stop - limit, stop, dtype=SEQUENCE_DTYPE), stop - limit)
    sequences = matching_sequences(store, flt, after_seq, stop)
    if not limit or len(sequences) <= limit:
        return Page(sequences, None)
    # Copies: a view would keep every match (8 bytes each) alive for as long as the page is sent.
    if oldest_first:
        sequences = sequences[:limit].copy()
        return Page(sequences, int(sequences[-1]) + 1)
    sequences = sequences[-limit:].copy()
    return Page(sequences, int(sequences[0]))


def held(store: ReadingStore, sequences: np.ndarray) -> np.ndarray:
    """Those of ``sequences`` still held."""
    return sequences[(sequences >= store.oldest_sequence) & (sequences < store.total_ingested)]


def gather(store: ReadingStore, sequences: np.ndarray) -> Columns:
    """A copy of the readings with these sequence numbers that are still held, in the given order."""
    slots = held(store, sequences) % store.capacity
    timestamps, values, codes = store.arrays
    return Columns(timestamps[slots], values[slots], codes[slots])
