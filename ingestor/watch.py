"""Fan-out of newly stored readings to live subscribers, with bounded buffers. Knows nothing of gRPC.

Publishing never waits: each subscriber has a buffer of at most ``capacity`` readings and
``capacity_bytes`` bytes, and what does not fit is dropped for that subscriber alone and counted.
The subscriber learns how many it missed once it has taken the readings before them, so a stuck
client costs a bounded amount of memory and nothing else.

Each stored batch is turned once into pieces that carry the category names their codes index
(``ingestor/named_columns.py``), and filtered once per distinct category filter. Subscribers share those pieces, and
whatever is encoded from them (see :meth:`NamedColumns.cached`): a hundred subscribers of the same
readings cost one copy and one encoding of them, not a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ingestor.errors import ShuttingDown, TooManySubscribers
from ingestor.named_columns import NamedColumns, name_columns, select, split
from ingestor.store import Columns, ReadingStore

DEFAULT_BUFFER_READINGS = 65_536
DEFAULT_BUFFER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a subscriber takes at once: readings in arrival order, then how many it lost after them."""

    batches: list[NamedColumns]
    missed: int
    waited_s: float = 0.0
    """How long the oldest reading of this delivery (or the first one lost) waited for it."""

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.batches)


class Subscription:
    def __init__(
        self,
        categories: frozenset[str],
        capacity: int,
        capacity_bytes: int = DEFAULT_BUFFER_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.categories = categories
        self._capacity = capacity
        self._capacity_bytes = capacity_bytes
        self._clock = clock
        self._pieces: deque[tuple[NamedColumns, float]] = deque()  # with the time each arrived
        self._queued = 0
        self._queued_bytes = 0
        self._missed = 0
        self._missed_since = 0.0
        self._ready = asyncio.Event()
        self._closed = False
        self.late_flags = False
        """Whether its readings keep their late flags (a byte each in its buffer)."""

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def missed(self) -> int:
        """Readings lost since the subscriber last took its deliveries."""
        return self._missed

    def offer(self, pieces: Sequence[NamedColumns]) -> None:
        """Queue the readings that fit, count the others as missed. Never blocks."""
        if not pieces:
            return
        self._ready.set()
        now = self._clock()
        if self._missed:
            # Once readings are lost, later ones wait until the subscriber has taken the gap:
            # a delivery is always "these readings, then that many missing".
            self._missed += sum(len(piece) for piece in pieces)
            return
        for piece in pieces:
            fit = 0
            if not self._missed:
                per_reading = piece.nbytes // len(piece)
                fit = max(
                    0,
                    min(
                        len(piece),
                        self._capacity - self._queued,
                        (self._capacity_bytes - self._queued_bytes) // per_reading,
                    ),
                )
            if fit > 0:
                kept = piece if fit == len(piece) else piece.head(fit)
                self._pieces.append((kept, now))
                self._queued += fit
                self._queued_bytes += kept.nbytes
            if fit < len(piece):
                if not self._missed:
                    self._missed_since = now
                self._missed += len(piece) - fit

    async def wait(self) -> None:
        """Until readings (or a gap) are queued; ShuttingDown once the hub closed and nothing is left."""
        while not (self._pieces or self._missed):
            if self._closed:
                raise ShuttingDown("the ingestor is shutting down")
            self._ready.clear()
            await self._ready.wait()

    async def take(self, max_readings: int | None = None) -> Delivery:
        """Wait for readings (or a gap) and take what is queued, at most ``max_readings`` of it; the
        gap comes with the delivery that empties the queue. ShuttingDown once the hub closed."""
        await self.wait()
        now = self._clock()
        oldest = self._pieces[0][1] if self._pieces else self._missed_since
        batches: list[NamedColumns] = []
        taken = 0
        limit = max_readings if max_readings is not None else self._queued
        while self._pieces and taken < limit:
            piece, arrived = self._pieces[0]
            if taken + len(piece) > limit:
                if batches:
                    break
                self._pieces[0] = (piece.tail(limit), arrived)  # a piece larger than a whole delivery
                piece = piece.head(limit)
            else:
                self._pieces.popleft()
            batches.append(piece)
            taken += len(piece)
            self._queued -= len(piece)
            self._queued_bytes -= piece.nbytes
        missed = 0
        if not self._pieces:
            missed, self._missed = self._missed, 0
        return Delivery(batches, missed, now - oldest)

    def abandon(self) -> int:
        """Drop everything queued; how many readings that was, missed ones included."""
        lost = self._queued + self._missed
        self._pieces.clear()
        self._queued = self._queued_bytes = self._missed = 0
        return lost

    def close(self) -> None:
        self._closed = True
        self._ready.set()


class WatchHub:
    """Subscribes to a store's appends and offers each batch to every subscriber."""

    def __init__(
        self,
        store: ReadingStore,
        buffer_readings: int,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        max_subscribers: int | None = None,
    ) -> None:
        self._store = store
        self._buffer = buffer_readings
        self._buffer_bytes = buffer_bytes
        self._max_subscribers = max_subscribers
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self.missed_total = 0
        """Readings that subscribers missed because they fell behind, since the start."""
        store.add_listener(self._publish)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def _publish(self, columns: Columns) -> None:
        if not self._subscriptions:
            return
        flagged = any(subscription.late_flags for subscription in self._subscriptions)
        # The store has counted the batch already: its first reading's sequence number is this.
        first_sequence = self._store.total_ingested - len(columns)
        named = name_columns(
            columns if flagged else Columns(columns.timestamps_ns, columns.values, columns.codes),
            self._store.categories,
            first_sequence,
        )
        pieces = split(named)
        by_filter: dict[tuple[frozenset[str], bool], list[NamedColumns]] = {(frozenset(), flagged): pieces}
        for subscription in self._subscriptions:
            wanted = (subscription.categories, subscription.late_flags)
            if wanted not in by_filter:
                if (frozenset(), False) not in by_filter:
                    by_filter[frozenset(), False] = [piece.without_late() for piece in pieces]
                by_filter[wanted] = select(by_filter[frozenset(), wanted[1]], wanted[0])
            missed = subscription.missed
            subscription.offer(by_filter[wanted])
            self.missed_total += subscription.missed - missed

    @contextlib.contextmanager
    def subscribe(self, categories: frozenset[str] = frozenset(), late_flags: bool = False) -> Iterator[Subscription]:
        """A subscription for as long as the block runs; TooManySubscribers beyond the limit. With
        ``late_flags`` its readings keep their late flags."""
        if self._max_subscribers is not None and len(self._subscriptions) >= self._max_subscribers:
            raise TooManySubscribers(
                f"the ingestor serves at most {self._max_subscribers} live subscribers: try again later"
            )
        subscription = Subscription(categories, self._buffer, self._buffer_bytes)
        subscription.late_flags = late_flags
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
