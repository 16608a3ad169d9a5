"""Fan-out of newly stored readings to live subscribers, with bounded buffers. Knows nothing of gRPC.

Publishing never waits: each subscriber has a buffer of at most ``capacity`` readings, and what does
not fit is dropped for that subscriber alone and counted. The subscriber learns how many it missed
with the next batch it takes, so a stuck client costs a bounded amount of memory and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from ingestor.query import ReadingFilter
from ingestor.store import Columns, ReadingStore


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a subscriber takes at once: readings in arrival order, then how many it lost after them."""

    batches: list[Columns]
    missed: int


class Closed(Exception):
    """The hub closed (the server is shutting down)."""


class Subscription:
    def __init__(self, store: ReadingStore, categories: frozenset[str], capacity: int) -> None:
        self._store = store
        self._filter = ReadingFilter(categories)
        self._capacity = capacity
        self._batches: deque[Columns] = deque()
        self._queued = 0
        self._missed = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._mask_for: tuple[int, object] = (-1, None)

    @property
    def queued(self) -> int:
        return self._queued

    def offer(self, columns: Columns) -> None:
        """Queue the matching readings that fit, count the others as missed. Never blocks."""
        if self._filter.categories:
            version = self._store.dictionary.version
            if self._mask_for[0] != version:  # recompute when the dictionary changed
                self._mask_for = (version, self._filter.code_mask(self._store))
            keep = self._filter.mask(columns, self._mask_for[1])  # type: ignore[arg-type]
            columns = Columns(columns.timestamps_ns[keep], columns.values[keep], columns.codes[keep])
        if not len(columns):
            return
        room = self._capacity - self._queued
        if room <= 0 or self._missed:
            # Once readings are lost, later ones wait until the subscriber has taken the gap:
            # a delivery is always "these readings, then that many missing".
            self._missed += len(columns)
        else:
            if len(columns) > room:
                self._missed += len(columns) - room
                columns = Columns(columns.timestamps_ns[:room], columns.values[:room], columns.codes[:room])
            self._batches.append(columns)
            self._queued += len(columns)
        self._ready.set()

    async def take(self) -> Delivery:
        """Wait for readings (or a gap) and take all that is queued; Closed once the hub closed."""
        while not (self._batches or self._missed):
            if self._closed:
                raise Closed
            self._ready.clear()
            await self._ready.wait()
        delivery = Delivery(list(self._batches), self._missed)
        self._batches.clear()
        self._queued = 0
        self._missed = 0
        return delivery

    def close(self) -> None:
        self._closed = True
        self._ready.set()


class WatchHub:
    """Subscribes to a store's appends and offers each batch to every subscriber."""

    def __init__(self, store: ReadingStore, buffer_readings: int) -> None:
        self._store = store
        self._buffer = buffer_readings
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        store.add_listener(self._publish)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def _publish(self, columns: Columns) -> None:
        # Columns passed to the store belong to the caller and are not reused after append: no copy.
        for subscription in self._subscriptions:
            subscription.offer(columns)

    @contextlib.contextmanager
    def subscribe(self, categories: frozenset[str] = frozenset()) -> Iterator[Subscription]:
        subscription = Subscription(self._store, categories, self._buffer)
        if self._closed:
            subscription.close()
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every subscription once it has taken what is queued; refuse new ones."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.close()
