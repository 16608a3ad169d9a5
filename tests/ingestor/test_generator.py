"""The generator: its schedule (rate, even spacing, no drift) and start/stop."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ingestor.generator import GeneratorControl, ReadingGenerator
from ingestor.store import ReadingStore

SECOND = 1_000_000_000


class FakeClock:
    def __init__(self, now_ns: int = 1_700_000_000 * SECOND) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def test_due_count_follows_the_rate_without_drift() -> None:
    start = 1_700_000_000 * SECOND
    generator = ReadingGenerator(rate_hz=1000, categories=["A"], start_ns=start)
    assert generator.due_count(start - 1) == 0
    assert generator.due_count(start) == 1  # the first reading is due at once
    generated = 0
    now = start
    # Irregular ticks, as a busy event loop would give: the schedule does not care.
    for tick_ms in (3, 17, 1, 250, 9, 720):
        now += tick_ms * 1_000_000
        count = generator.due_count(now)
        generator.generate(count)
        generated += count
    assert generated == 1000 + 1  # exactly rate x elapsed, plus the reading at t=0


def test_timestamps_are_evenly_spread_and_continue_across_batches() -> None:
    start = 1_700_000_000 * SECOND
    generator = ReadingGenerator(rate_hz=4, categories=["A", "B", "C"], start_ns=start, seed=1)
    first, _, _ = generator.generate(3)
    second, values, which = generator.generate(5)
    stamps = np.concatenate([first, second])
    assert (stamps - start).tolist() == [i * SECOND // 4 for i in range(8)]
    assert set(which.tolist()) <= {0, 1, 2}
    assert np.all(np.isfinite(values))
    assert np.allclose(values, np.round(values, 2))


def test_values_are_plausible_sensor_readings() -> None:
    generator = ReadingGenerator(rate_hz=1, categories=["A", "B", "C"], start_ns=0, seed=3)
    _, values, which = generator.generate(30_000)
    for code in range(3):
        own = values[which == code]
        assert 20 < own.mean() < 80
        assert 1 < own.std() < 5


def test_a_million_readings_a_second_keep_up() -> None:
    clock = FakeClock()
    store = ReadingStore(capacity=2_000_000)
    control = GeneratorControl(store, rate_hz=1_000_000, categories=["A", "B", "C"], clock=clock)
    generator = ReadingGenerator(1_000_000, control.categories, start_ns=clock.now_ns)
    for _ in range(100):  # one second in ticks of 10 ms
        clock.now_ns += 10_000_000
        control.emit_due(generator)
    assert store.total_ingested == 1_000_001
    stamps = store.read(0, store.total_ingested).timestamps_ns
    assert np.all(np.diff(stamps) == 1000)


@pytest.mark.anyio
async def test_start_and_stop_are_idempotent_and_never_run_two_generators() -> None:
    store = ReadingStore(capacity=100)
    control = GeneratorControl(store, rate_hz=1000, categories=["A"])
    results = [control.start() for _ in range(5)]
    assert results == [True, False, False, False, False]
    generators = [task for task in asyncio.all_tasks() if task.get_name() == "generator"]
    assert len(generators) == 1
    await asyncio.sleep(0.05)
    assert store.total_ingested > 0
    stops = await asyncio.gather(*(control.stop() for _ in range(5)))
    assert sorted(stops) == [False, False, False, False, True]
    assert not control.running
    kept = store.total_ingested
    await asyncio.sleep(0.05)
    assert store.total_ingested == kept  # stopped for real, and the buffer is kept


def test_a_seed_gives_the_same_readings_however_they_are_batched() -> None:
    one = ReadingGenerator(rate_hz=1000, categories=["A", "B", "C"], start_ns=0, seed=42)
    two = ReadingGenerator(rate_hz=1000, categories=["A", "B", "C"], start_ns=0, seed=42)
    whole = one.generate(1000)
    parts = [two.generate(n) for n in (1, 7, 300, 2, 690)]
    for column in range(3):
        assert whole[column].tolist() == np.concatenate([part[column] for part in parts]).tolist()
    other = ReadingGenerator(rate_hz=1000, categories=["A", "B", "C"], start_ns=0, seed=43).generate(1000)
    assert other[1].tolist() != whole[1].tolist()
    assert set(whole[2].tolist()) == {0, 1, 2}
