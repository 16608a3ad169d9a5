"""Timings of the query paths on a full buffer of 1,000,000 readings (best of 5).

Run with ``.venv/bin/python -m scripts.bench_query``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from functions.processing import EXTRA_STATS, aggregate, aggregate_by_category, aggregate_records
from functions.readings import Readings
from ingestor.query import ReadingFilter, gather, matching_sequences, select_page
from ingestor.store import Columns, ReadingStore

N = 1_000_000
T0 = 1_705_744_800 * 10**9
SECOND = 10**9


def best_ms(work: Callable[[], object], repeat: int = 5) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings) * 1000


def main() -> None:
    store = ReadingStore(N)
    timestamps = T0 + np.arange(N, dtype=np.int64) * 1_000_000  # 1 kHz: a bit over 16 minutes
    rng = np.random.default_rng(1)
    codes = store.encode_categories(["A", "B", "C"])[rng.integers(0, 3, N)]
    store.append(Columns(timestamps, rng.normal(50, 5, N), codes))
    readings = Readings(timestamps, store.arrays[1].copy(), codes, ["A", "B", "C"])
    flt = ReadingFilter(frozenset({"B"}), T0 + 100 * SECOND, T0 + 900 * SECOND)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("filter mask (category + time range)", lambda: matching_sequences(store, flt, 0, N)),
        ("filtered page of 1000, newest", lambda: gather(store, select_page(store, flt, limit=1000).sequences)),
        ("aggregate_by_category", lambda: aggregate_by_category(readings)),
        (
            "window=1m, all 9 stats, to records",
            lambda: aggregate_records(aggregate(readings, window_ns=60 * SECOND, stats=EXTRA_STATS), EXTRA_STATS),
        ),
        (
            "window=1s, p99+std, to records",
            lambda: aggregate_records(aggregate(readings, window_ns=SECOND, stats=["p99", "std"]), ["p99", "std"]),
        ),
    ]
    for name, work in cases:
        print(f"{name:40s} {best_ms(work):8.1f} ms")


if __name__ == "__main__":
    main()
