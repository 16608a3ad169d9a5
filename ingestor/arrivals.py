"""When the readings of each block of the ring arrived, for retention by age. Knows nothing of gRPC.

Kept per block (the blocks of ``ingestor/blocks.py``), not per reading: the newest arrival in each
block, 16 bytes or so a block. Arrival order is sequence order, so these times only grow from
block to block, and the blocks older than a cut-off are a prefix of the ring.
"""

from __future__ import annotations


class Arrivals:
    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self._newest: dict[int, int] = {}
        """Block number -> wall-clock ns its newest reading arrived at, oldest block first."""

    def mark(self, start_seq: int, stop_seq: int, arrived_ns: int, replace: bool = False) -> None:
        """Readings ``[start_seq, stop_seq)`` arrived at ``arrived_ns``."""
        size = self.block_size
        for number in range(start_seq // size, (stop_seq - 1) // size + 1):
            known = self._newest.get(number)
            self._newest[number] = arrived_ns if known is None or replace else max(known, arrived_ns)

    def forget_before(self, oldest_seq: int) -> None:
        """Readings below ``oldest_seq`` are gone: drop the blocks that hold none of the rest."""
        first_held = oldest_seq // self.block_size
        while self._newest and (oldest := next(iter(self._newest))) < first_held:
            del self._newest[oldest]

    def expired_below(self, cutoff_ns: int, oldest_seq: int, total: int) -> int:
        """The sequence number below which every block's newest reading arrived at or before
        ``cutoff_ns`` (``oldest_seq`` when none did)."""
        keep_from = oldest_seq
        for number, arrived_ns in self._newest.items():
            if arrived_ns > cutoff_ns:
                break
            keep_from = min((number + 1) * self.block_size, total)
        return max(keep_from, oldest_seq)
