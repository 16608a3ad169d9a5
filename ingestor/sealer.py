"""Seals complete blocks of the ring in a worker thread, between bursts of writes.

Once blocks fill up, their partials (``ingestor/blocks.py``) are computed from the ring in a thread
of the default executor, straight from the ring's memory, when writes pause for ``QUIET_S``, once
``MAX_BACKLOG`` blocks wait, or at the latest ``MAX_WAIT_S`` after a block filled up: sealing costs
about a third of what storing the readings did, and on a busy machine it would take that from a
burst of writes. A block the ring started to overwrite while its partials were computed is not
kept (``BlockIndex.add`` checks), so a torn read is never used. A query that finds a block not
sealed yet seals it itself (``ingestor/pushdown.py``), which costs it what reading the block would.
"""

from __future__ import annotations

import asyncio
import logging

from ingestor.blocks import seal_block
from ingestor.store import Columns, ReadingStore
from ingestor.tasks import cancel_and_wait

log = logging.getLogger("ingestor")

QUIET_S = 0.02
"""Sealing waits until no write came for this long..."""
MAX_BACKLOG = 64
"""...or until this many complete blocks wait (4M readings of 65,536)..."""
MAX_WAIT_S = 1.0
"""...or for this long at most: a steady stream (the generator ticks every 10 ms) never pauses."""


class BlockSealer:
    def __init__(self, store: ReadingStore) -> None:
        self._store = store
        self._wake = asyncio.Event()
        self._wake.set()  # blocks recovered from the data directory are sealed at start
        self._task: asyncio.Task[None] | None = None
        self._filled = store.total_ingested // store.blocks.block_size
        self._writes = 0
        store.add_listener(self._stored)

    def _stored(self, _: Columns) -> None:
        self._writes += 1
        filled = self._store.total_ingested // self._store.blocks.block_size
        if filled != self._filled:
            self._filled = filled
            self._wake.set()

    async def _quiet(self) -> None:
        """Until no write came for QUIET_S, MAX_BACKLOG blocks wait to be sealed, or MAX_WAIT_S passed."""
        store = self._store
        deadline = asyncio.get_running_loop().time() + MAX_WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            writes = self._writes
            await asyncio.sleep(QUIET_S)
            if self._writes == writes:
                return
            if len(store.blocks.unsealed(store.oldest_sequence, store.total_ingested)) >= MAX_BACKLOG:
                return

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="block-sealer")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        store = self._store
        while True:
            await self._wake.wait()
            await self._quiet()
            self._wake.clear()
            for number in store.blocks.unsealed(store.oldest_sequence, store.total_ingested):
                if number * store.blocks.block_size < store.oldest_sequence or store.blocks.get(number):
                    continue  # evicted, or sealed by a query, while the blocks before it were sealed
                columns = store.block_columns(number)
                block = await asyncio.to_thread(
                    seal_block, columns.timestamps_ns, columns.values, columns.codes, store.blocks.max_second_rows
                )
                store.blocks.add(number, block, store.oldest_sequence)
