"""Sealed blocks of the ring and their partial aggregates, for queries that need no readings.

A block is a run of ``block_size`` consecutive sequence numbers, block ``b`` holding
``[b * block_size, (b + 1) * block_size)``. Once every reading of a block is stored (the block is
complete) and while every one of them is still held, the block can be sealed: its smallest and largest
event time, and its partials (``ingestor/partials.py``) per category and per (category, second),
are computed once and kept. A block the ring starts to overwrite loses its partials at once (its
held readings are read from the ring again), so accounting never counts an evicted reading.

Per-second partials are dropped for a block whose readings are spread over so many seconds that
they would take more than about a byte a reading (out-of-order pushes over a long span): window
queries then read that block's readings. Knows nothing of gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingestor.partials import SECOND_NS, PartialTable, partials_by_bucket, rekey

BLOCK_READINGS = 65_536
"""Readings a block holds: a sealed block costs 3 rows a category plus its seconds' rows."""


@dataclass(frozen=True, slots=True)
class SealedBlock:
    first_ns: int
    """The smallest event time in the block."""
    last_ns: int
    """The largest event time in the block."""
    by_category: PartialTable
    """One row per category (key 0)."""
    by_second: PartialTable | None
    """One row per (category, second of event time); None when there would be too many."""

    @property
    def nbytes(self) -> int:
        return self.by_category.nbytes + (self.by_second.nbytes if self.by_second is not None else 0)


def seal_block(timestamps_ns: np.ndarray, values: np.ndarray, codes: np.ndarray, max_second_rows: int) -> SealedBlock:
    """A complete block's bounds and partials, from its readings (pure: safe in a worker thread)."""
    by_second = partials_by_bucket(timestamps_ns, values, codes, SECOND_NS)
    by_category = rekey(by_second, np.zeros(len(by_second), np.int64))
    return SealedBlock(
        first_ns=int(by_category.first_ns.min()),
        last_ns=int(by_category.last_ns.max()),
        by_category=by_category,
        by_second=by_second if len(by_second) <= max_second_rows else None,
    )


class BlockIndex:
    """The sealed blocks of a ring, by block number."""

    def __init__(self, block_size: int = BLOCK_READINGS) -> None:
        if block_size < 1:
            raise ValueError("block_size must be at least 1")
        self.block_size = block_size
        self.max_second_rows = max(block_size // 100, 16)
        """Per-second rows kept for a block at most: 80 bytes each, so under 1 byte a reading."""
        self._sealed: dict[int, SealedBlock] = {}
        self._oldest_block = 0
        """No block below this one is sealed: it is not wholly held any more."""

    def __len__(self) -> int:
        return len(self._sealed)

    @property
    def nbytes(self) -> int:
        return sum(block.nbytes for block in self._sealed.values())

    def get(self, number: int) -> SealedBlock | None:
        return self._sealed.get(number)

    def wholly_held(self, oldest_seq: int, total: int) -> range:
        """The numbers of the complete blocks every reading of which is held."""
        size = self.block_size
        return range(-(-oldest_seq // size), total // size)

    def unsealed(self, oldest_seq: int, total: int) -> list[int]:
        """Complete, wholly held blocks not sealed yet, oldest first."""
        return [number for number in self.wholly_held(oldest_seq, total) if number not in self._sealed]

    def add(self, number: int, block: SealedBlock, oldest_seq: int) -> bool:
        """Keep ``block``'s partials if it is still wholly held (it may have been overwritten while
        they were computed: then they are dropped). Whether they were kept."""
        if number * self.block_size < oldest_seq:
            return False
        self._sealed[number] = block
        return True

    def evicted_up_to(self, oldest_seq: int) -> None:
        """Readings below ``oldest_seq`` are gone: drop every block that held one of them."""
        first_whole = -(-oldest_seq // self.block_size)
        if first_whole <= self._oldest_block:
            return
        if first_whole - self._oldest_block > len(self._sealed):
            for number in [n for n in self._sealed if n < first_whole]:
                del self._sealed[number]
        else:
            for number in range(self._oldest_block, first_whole):
                self._sealed.pop(number, None)
        self._oldest_block = first_whole
