"""Back-pressure: the bytes handed to the journal and not on disk yet, bounded.

A batch takes room here before it enters the store and gives it back once its commit is done, so
what waits for the disk in memory stays within ``limit_bytes`` (a batch larger than the whole bound
is let in alone). A write that finds no room waits for it, first come first served, until the
time it may wait runs out: then it fails with Backpressure and stores nothing. The generator waits
behind the writes. Event-loop only: commits report back through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ingestor.errors import Backpressure

RETRY_AFTER_S = 1.0
"""What a write turned away is told to wait before it tries again (a slow disk frees room per commit)."""


class Backlog:
    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("limit_bytes must be at least 1")
        self.limit_bytes = limit_bytes
        self.pending_bytes = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._open: asyncio.Event | None = None

    def _fits(self, size: int) -> bool:
        return self.pending_bytes == 0 or self.pending_bytes + size <= self.limit_bytes

    @property
    def full(self) -> bool:
        """True while a write would have to wait (or writes wait already)."""
        return bool(self._waiters) or self.pending_bytes >= self.limit_bytes

    def take(self, size: int) -> None:
        """Take room without waiting (the generator's batches, once it was let through)."""
        self.pending_bytes += size

    async def reserve(self, size: int, wait_s: float) -> None:
        """Take ``size`` bytes of room, waiting for them at most ``wait_s``; Backpressure past it."""
        if not self._waiters and self._fits(size):
            self.take(size)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout=max(wait_s, 0.0))
        except BaseException as error:
            if waiter.done() and not waiter.cancelled():
                # Let in at the moment the wait ended: the room is ours, hand it back.
                self.release(size)
            else:
                waiter.cancel()
                self._waiters.remove(entry)
                self._grant()  # a smaller write behind this one may fit now
            if isinstance(error, TimeoutError):
                raise Backpressure(
                    f"the disk does not keep up: {self.pending_bytes:,} bytes wait to be written "
                    f"(INGESTOR_JOURNAL_QUEUE_BYTES {self.limit_bytes:,}); nothing was stored, try again later",
                    RETRY_AFTER_S,
                ) from None
            raise

    async def wait_until_open(self) -> None:
        """Return once nothing waits and there is room below the bound (the generator's turn)."""
        while self.full:
            if self._open is None:
                self._open = asyncio.Event()
            await self._open.wait()

    def release(self, size: int) -> None:
        self.pending_bytes -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            size, waiter = self._waiters.popleft()
            if not waiter.done():
                self.take(size)
                waiter.set_result(None)
        if not self.full and self._open is not None:
            self._open.set()
            self._open = None
