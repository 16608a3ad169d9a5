"""Simulated sensor readings, generated in batches on a fixed schedule. Knows nothing of gRPC.

Reading ``i`` of a run is due at ``start + i / rate`` and carries exactly that timestamp, so
timestamps are evenly spread and never drift, however late the event loop wakes up: each tick
generates every reading that has fallen due since the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from ingestor.store import Columns, ReadingStore

MIN_TICK_S = 0.01
"""At high rates, wake up at most 100 times a second and generate a batch each time."""
MAX_BATCH = 262_144
"""Split catching up after a long stall into batches of at most this many readings."""

Clock = Callable[[], int]
"""Returns the time in nanoseconds since the Unix epoch."""


class ReadingGenerator:
    """Produces the readings that are due at a given time, for one run of the generator."""

    def __init__(
        self,
        rate_hz: float,
        categories: Sequence[str],
        start_ns: int,
        seed: int | None = None,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        if not categories:
            raise ValueError("at least one category is needed")
        self.rate_hz = rate_hz
        self.categories = tuple(categories)
        self.start_ns = start_ns
        self.emitted = 0
        self._rng = np.random.default_rng(seed)
        # Each category hovers around its own level, like sensors in different places.
        self._levels = np.array([30.0 + zlib.crc32(name.encode()) % 40 for name in self.categories])

    def due_count(self, now_ns: int) -> int:
        """How many readings are due at ``now_ns`` and not generated yet."""
        if now_ns < self.start_ns:
            return 0
        due_total = int((now_ns - self.start_ns) * self.rate_hz // 1_000_000_000) + 1
        return max(0, due_total - self.emitted)

    def next_due_ns(self) -> int:
        return self.start_ns + int(self.emitted * 1_000_000_000 / self.rate_hz)

    def generate(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``count`` readings: timestamps (ns), values, and indexes into ``categories``."""
        index = np.arange(self.emitted, self.emitted + count, dtype=np.float64)
        timestamps = self.start_ns + (index * (1e9 / self.rate_hz)).astype(np.int64)
        which = self._rng.integers(0, len(self.categories), size=count)
        values = np.round(self._levels[which] + self._rng.normal(0.0, 2.5, size=count), 2)
        self.emitted += count
        return timestamps, values, which


class Ingestion:
    """Starts and stops the one generator task that feeds a store.

    Start and stop are idempotent. Both run on the event loop without awaiting before they decide,
    so concurrent calls can never start a second generator.
    """

    def __init__(
        self,
        store: ReadingStore,
        rate_hz: float,
        categories: Sequence[str],
        clock: Clock = time.time_ns,
        append: Callable[[Columns], object] | None = None,
    ) -> None:
        self._store = store
        # Where each generated batch goes: the store itself, or something that also logs it.
        self._append = append or store.append
        self.rate_hz = rate_hz
        self.categories = tuple(categories)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> bool:
        """Start generating; False when it was already running."""
        if self.running:
            return False
        generator = ReadingGenerator(self.rate_hz, self.categories, start_ns=self._clock())
        self._task = asyncio.get_running_loop().create_task(self._run(generator), name="generator")
        return True

    async def stop(self) -> bool:
        """Stop generating, keeping what is stored; False when it was not running."""
        task, self._task = self._task, None
        if task is None or task.done():
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    def emit_due(self, generator: ReadingGenerator) -> int:
        """Store every reading that is due now; return how many."""
        due = generator.due_count(self._clock())
        emitted = 0
        codes_for = self._store.encode_categories(generator.categories)
        while emitted < due:
            count = min(due - emitted, MAX_BATCH)
            timestamps, values, which = generator.generate(count)
            self._append(Columns(timestamps, values, codes_for[which]))
            emitted += count
        return emitted

    async def _run(self, generator: ReadingGenerator) -> None:
        while True:
            self.emit_due(generator)
            wait_ns = generator.next_due_ns() - self._clock()
            await asyncio.sleep(max(wait_ns / 1e9, MIN_TICK_S))
