"""Simulated sensor readings, generated in batches on a fixed schedule. Knows nothing of gRPC.

Reading ``i`` of a run is due at ``start + i / rate`` and carries exactly that timestamp, so
timestamps are evenly spread and never drift, however late the event loop wakes up: each tick
generates every reading that has fallen due since the last one.

In durable mode the disk may hold the generator back: before each tick it waits until the intake
has room (the journal's queue is not full, the data directory is not full). The readings that fell
due while it waited are skipped, never generated, so it slows down to what the disk sustains
instead of piling up memory, and resumes by itself. Why, and the rate it achieves, are in its status.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ingestor.errors import ConfigConflict, DiskFull
from ingestor.store import Columns, ReadingStore
from ingestor.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MIN_TICK_S = 0.01
"""At high rates, wake up at most 100 times a second and generate a batch each time."""
MAX_BATCH = 262_144
"""Split catching up after a long stall into batches of at most this many readings."""

RATE_WINDOW_S = 5.0
"""The achieved rate is measured over this long, and a hold is reported for this long after it ended."""

Clock = Callable[[], int]
"""Returns the time in nanoseconds since the Unix epoch."""


class Pacing(Protocol):
    """What holds the generator back: the intake in durable mode."""

    def generator_held_back(self) -> str | None:
        """Why the next batch cannot be stored now, or None when it can."""
        ...

    def wait_for_room(self) -> Awaitable[None]:
        """Wait until the reason given may have gone (not longer than a fraction of a second at a time)."""
        ...

    def generated_readings_that_fit(self) -> int | None:
        """How many readings may be stored now; None: no bound."""
        ...


QUEUE_FULL = "the disk does not keep up: the journal's queue is full"


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

    def skip_due(self, now_ns: int) -> int:
        """Give up the readings due at ``now_ns``: they are never generated. Returns how many."""
        skipped = self.due_count(now_ns)
        self.emitted += skipped
        return skipped

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
        pacing: Pacing | None = None,
    ) -> None:
        self._store = store
        # Where each generated batch goes: the store itself, or something that also logs it.
        self._append = append or store.append
        self._pacing = pacing
        # (monotonic s, readings stored in this run) after each tick, over the last RATE_WINDOW_S.
        self._stored: deque[tuple[float, int]] = deque()
        self._hold: tuple[float, str] | None = None
        """When the generator last had to wait for room, and why."""
        self._waiting = False
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
        self._stored.clear()
        self._hold = None
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
        await cancel_and_wait(task)
        return True

    def emit_due(self, generator: ReadingGenerator, at_most: int | None = None) -> int:
        """Store every reading that is due now, or only the first ``at_most`` of them (the rest are
        skipped); return how many were stored."""
        now = self._clock()
        due = generator.due_count(now)
        if at_most is not None and due > at_most:
            due = at_most
            self._held(QUEUE_FULL, generator, skip=False)
        emitted = 0
        codes_for = self._store.encode_categories(generator.categories)
        while emitted < due:
            count = min(due - emitted, MAX_BATCH)
            timestamps, values, which = generator.generate(count)
            self._append(Columns(timestamps, values, codes_for[which]))
            emitted += count
        if at_most is not None and emitted == at_most:
            generator.skip_due(now)
        return emitted

    def achieved_rate_hz(self) -> float:
        """Readings stored per second over the last RATE_WINDOW_S of this run (less at its start);
        0 when it does not run. It falls while the generator waits, as nothing is stored then."""
        if not self.running or not self._stored:
            return 0.0
        now = time.monotonic()
        base_at, base = self._stored[0]
        for at, total in self._stored:  # the newest sample at least RATE_WINDOW_S old, or the first
            if now - at < RATE_WINDOW_S:
                break
            base_at, base = at, total
        return (self._stored[-1][1] - base) / (now - base_at) if now > base_at else 0.0

    @property
    def held_back(self) -> str | None:
        """Why the generator stored fewer readings than due within the last RATE_WINDOW_S, if it did."""
        if not self.running or self._hold is None:
            return None
        if not self._waiting and time.monotonic() - self._hold[0] > RATE_WINDOW_S:
            return None
        return self._hold[1]

    def _count(self, stored: int) -> None:
        now = time.monotonic()
        total = (self._stored[-1][1] if self._stored else 0) + stored
        self._stored.append((now, total))
        while len(self._stored) > 2 and now - self._stored[1][0] >= RATE_WINDOW_S:
            self._stored.popleft()

    def _held(self, reason: str, generator: ReadingGenerator, skip: bool = True) -> None:
        """The generator waited (or was refused): skip what fell due meanwhile, and say why."""
        if self.held_back != reason:
            log.warning("the generator is held back, readings that fall due meanwhile are skipped: %s", reason)
        if skip:
            generator.skip_due(self._clock())
        self._hold = (time.monotonic(), reason)

    async def _run(self, generator: ReadingGenerator) -> None:
        self._count(0)
        while True:
            fit = None
            if self._pacing is not None:
                while (reason := self._pacing.generator_held_back()) is not None:
                    self._held(reason, generator)
                    self._waiting = True
                    try:
                        await self._pacing.wait_for_room()
                    finally:
                        self._waiting = False
                    generator.skip_due(self._clock())
                fit = self._pacing.generated_readings_that_fit()
            was_held = self._hold
            try:
                stored = self.emit_due(generator, fit)
            except DiskFull as full:
                self._held(str(full), generator)
                stored = 0
            self._count(stored)
            if was_held is not None and self._hold is was_held and self.held_back is None:
                log.info("the generator keeps its rate again")
                self._hold = None
            wait_ns = generator.next_due_ns() - self._clock()
            await asyncio.sleep(max(wait_ns / 1e9, MIN_TICK_S))
