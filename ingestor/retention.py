"""Retention by age: every so often, evict the blocks whose readings all arrived too long ago.

The store evicts a block at a time (``ReadingStore.expire``), as a log deletes whole segments, and
in durable mode the journal deletes the rows of what was evicted, so a restart does not bring them
back (recovery also skips rows older than the limit by itself).
"""

from __future__ import annotations

import asyncio

from ingestor.journal import Journal
from ingestor.store import ReadingStore
from ingestor.tasks import cancel_and_wait

MAX_INTERVAL_S = 1.0


class AgeRetention:
    def __init__(self, store: ReadingStore, max_age_ns: int, journal: Journal | None = None) -> None:
        self._store = store
        self._max_age_ns = max_age_ns
        self._journal = journal
        self.interval_s = min(MAX_INTERVAL_S, max_age_ns / 1e9 / 10)
        self._task: asyncio.Task[None] | None = None

    def expire(self) -> int:
        """Evict what is too old now; how many readings were."""
        evicted = self._store.expire(self._max_age_ns)
        if evicted and self._journal is not None:
            self._journal.expire_below(self._store.oldest_sequence)
        return evicted

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="age-retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            self.expire()
            await asyncio.sleep(self.interval_s)
