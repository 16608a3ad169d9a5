"""Simulated sensor readings, generated in batches on a fixed schedule. Knows nothing of gRPC.

Reading ``i`` of a run is due at ``start + i / rate`` and carries exactly that timestamp, so
timestamps are evenly spread and never drift, however late the event loop wakes up: each tick
generates every reading that has fallen due since the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ingestor.errors import ConfigConflict
from ingestor.store import Columns, ReadingStore

log = logging.getLogger(__name__)

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
        # One stream per column, each drawn one number a reading: a seed gives the same readings
        # however the run happens to be split into batches.
        categories_seed, values_seed = np.random.SeedSequence(seed).spawn(2)
        self._category_rng = np.random.default_rng(categories_seed)
        self._value_rng = np.random.default_rng(values_seed)
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
        which = (self._category_rng.random(count) * len(self.categories)).astype(np.intp)
        values = np.round(self._levels[which] + self._value_rng.normal(0.0, 2.5, size=count), 2)
        self.emitted += count
        return timestamps, values, which


@dataclass(frozen=True, slots=True)
class RunConfig:
    """How one run of the generator produces readings."""

    rate_hz: float
    categories: tuple[str, ...]
    seed: int | None = None
    """The same seed gives the same sequence of categories and values; None draws one at random."""


class GeneratorControl:
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
        self.default_config = RunConfig(rate_hz, tuple(categories))
        self.config = self.default_config
        """The configuration of the current run, or of the last one when stopped."""
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.failure: str | None = None
        """Why the last run ended by itself, when it did (None while running or after a stop)."""

    @property
    def rate_hz(self) -> float:
        return self.config.rate_hz

    @property
    def categories(self) -> tuple[str, ...]:
        return self.config.categories

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, config: RunConfig | None = None) -> bool:
        """Start generating; False when it was already running with this configuration (or None).

        ConfigConflict when it runs with another one, CategoryLimitError when the store has no
        room for its categories. Without a configuration, a run uses the defaults.
        """
        if self.running:
            if config is not None and config != self.config:
                raise ConfigConflict(
                    "the generator is running with another configuration: stop ingestion first, then start it "
                    "with the new one"
                )
            return False
        config = config or self.default_config
        # Its categories keep their codes for the whole run, so the run cannot fail for want of room.
        self._store.pin_categories(config.categories)
        self.config, self.failure = config, None
        generator = ReadingGenerator(config.rate_hz, config.categories, start_ns=self._clock(), seed=config.seed)
        self._task = asyncio.get_running_loop().create_task(self._run(generator), name="generator")
        self._task.add_done_callback(lambda task: self._ended(task, config))
        return True

    def _ended(self, task: asyncio.Task[None], config: RunConfig) -> None:
        self._store.unpin_categories(config.categories)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.failure = f"the generator stopped: {error}"
            log.error("the generator stopped by itself: %s", error, exc_info=error)

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
