"""Seals complete blocks of the ring in a worker thread, so that the write path never waits for it.

Each time a block fills up, its partials (``ingestor/blocks.py``) are computed from the ring in a
thread of the default executor, straight from the ring's memory: numpy lets go of the GIL for most
of that work, so writes go on meanwhile. A block the ring started to overwrite while its partials
were computed is not kept (``BlockIndex.add`` checks), so a torn read is never used. Until a block
is sealed, queries read its readings instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ingestor.blocks import seal_block
from ingestor.store import Columns, ReadingStore

log = logging.getLogger("ingestor")


class BlockSealer:
    def __init__(self, store: ReadingStore) -> None:
        self._store = store
        self._wake = asyncio.Event()
        self._wake.set()  # blocks recovered from the data directory are sealed at start
        self._task: asyncio.Task[None] | None = None
        self._filled = store.total_ingested // store.blocks.block_size
        store.add_listener(self._stored)

    def _stored(self, _: Columns) -> None:
        filled = self._store.total_ingested // self._store.blocks.block_size
        if filled != self._filled:
            self._filled = filled
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="block-sealer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        store = self._store
        while True:
            await self._wake.wait()
            self._wake.clear()
            for number in store.blocks.unsealed(store.oldest_sequence, store.total_ingested):
                if number * store.blocks.block_size < store.oldest_sequence:
                    continue  # evicted while the blocks before it were sealed
                columns = store.block_columns(number)
                block = await asyncio.to_thread(
                    seal_block, columns.timestamps_ns, columns.values, columns.codes, store.blocks.max_second_rows
                )
                store.blocks.add(number, block, store.oldest_sequence)
