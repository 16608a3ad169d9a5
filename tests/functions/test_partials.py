"""Partials merged with pandas (functions/partials.py) give /processed-data's rows, as the readings do."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from functions.partials import (
    PARTIAL_COLUMNS,
    aggregate_partials,
    aggregate_partials_by_category,
    by_category_records,
    mergeable,
)
from functions.processing import (
    TooManyGroups,
    WindowSpec,
    aggregate,
    aggregate_by_category,
    aggregate_records,
    processed_records,
)
from functions.readings import Readings
from ingestor.partials import compute_partials

T0 = 1_705_744_800_000_000_000
S = 1_000_000_000
NAMES = ("north", "south", "east")


def partial_rows(readings: Readings, key_ns: int, chunks: int) -> pd.DataFrame:
    """Partials of ``chunks`` runs of the readings, each computed alone, as the ingestor's rows."""
    bounds = np.linspace(0, len(readings), chunks + 1).astype(int)
    frames = []
    for a, b in itertools.pairwise(bounds):
        part = readings.slice(a, b)
        keys = part.timestamps_ns // key_ns if key_ns else None
        table = compute_partials(part.timestamps_ns, part.values, part.codes, keys)
        columns: dict[str, Any] = {
            "category": np.asarray(readings.categories, dtype=object)[table.codes],
            "key": table.keys,
        }
        columns |= {name: getattr(table, name) for name in PARTIAL_COLUMNS}
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)


def random_readings(seed: int, n: int = 2000) -> Readings:
    rng = np.random.default_rng(seed)
    times = T0 + rng.integers(0, 600 * S, n)
    return Readings(times, np.round(rng.normal(20, 5, n), 3), rng.integers(0, 3, n).astype(np.uint16), NAMES)


def assert_same_records(pushed: list[dict[str, Any]], raw: list[dict[str, Any]]) -> None:
    """Equal keys, order and exact fields; floats within 1e-12 of the values' magnitude."""
    assert [list(r) for r in pushed] == [list(r) for r in raw]
    for a, b in zip(pushed, raw, strict=True):
        for key, expected in b.items():
            if isinstance(expected, float) and not isinstance(expected, bool):
                assert a[key] is not None
                assert math.isclose(a[key], expected, rel_tol=1e-12, abs_tol=1e-9), (key, a[key], expected)
            else:
                assert a[key] == expected, key


WINDOW_CASES = [
    WindowSpec(length_ns=60 * S),
    WindowSpec(length_ns=10 * S),
    WindowSpec(length_ns=60 * S, step_ns=10 * S),
    WindowSpec(length_ns=60 * S, step_ns=20 * S, grace_ns=30 * S),
    WindowSpec(length_ns=60 * S, final_only=True),
    WindowSpec(length_ns=10 * S, fill="null"),
    WindowSpec(length_ns=10 * S, step_ns=5 * S, fill="zero"),
    WindowSpec(length_ns=10 * S, fill="previous", since_ns=T0 - 30 * S, until_ns=T0 + 700 * S),
    WindowSpec(length_ns=10 * S, fill="linear"),
]


@pytest.mark.parametrize("windows", WINDOW_CASES)
@pytest.mark.parametrize("stats", [(), ("min", "max", "sum", "std", "first_timestamp"), ("std", "min")])
def test_windows_from_partials_equal_windows_from_readings(windows: WindowSpec, stats: tuple[str, ...]) -> None:
    data = random_readings(len(stats), 600)  # sparse enough that some 10 s windows are empty
    raw = aggregate_records(aggregate(data, stats=stats, windows=windows), stats)
    # Partials per second, per step or per window: any bucket that divides the step serves.
    for key_ns in {S, windows.step}:
        frame = aggregate_partials(partial_rows(data, key_ns, 5), key_ns, windows=windows, stats=stats)
        assert_same_records(aggregate_records(frame, stats), raw)


def test_per_category_from_partials_equals_the_seed_answer() -> None:
    data = random_readings(9)
    expected = processed_records(aggregate_by_category(data))
    rows = partial_rows(data, 0, 7)
    assert_same_records(processed_records(aggregate_partials_by_category(rows)), expected)
    assert by_category_records(rows) == processed_records(aggregate_partials_by_category(rows))
    stats = ("sum", "std", "max")
    raw = aggregate_records(aggregate(data, stats=stats), stats)
    assert_same_records(aggregate_records(aggregate_partials(partial_rows(data, S, 3), S, stats=stats), stats), raw)


def test_hand_computed_windows() -> None:
    data = Readings(
        np.array([T0 + 1 * S, T0 + 59 * S, T0 + 61 * S, T0 + 2 * S], np.int64),
        np.array([1.0, 3.0, 10.0, 2.0]),
        np.array([0, 0, 0, 1], np.uint16),
        ("A", "B"),
    )
    stats = ("min", "max", "sum", "std", "first_timestamp")
    frame = aggregate_partials(partial_rows(data, S, 2), S, windows=WindowSpec(length_ns=60 * S), stats=stats)
    records = aggregate_records(frame, stats)
    assert [(r["category"], r["count"], r["sum"], r["min"], r["max"]) for r in records] == [
        ("A", 2, 4.0, 1.0, 3.0),
        ("B", 1, 2.0, 2.0, 2.0),
        ("A", 1, 10.0, 10.0, 10.0),
    ]
    assert records[0]["std"] == math.sqrt(2.0)
    assert records[1]["std"] is None
    assert records[2]["std"] is None
    assert records[0]["first_timestamp"] == "2024-01-20T10:00:01.000000Z"
    assert records[0]["last_timestamp"] == "2024-01-20T10:00:59.000000Z"
    assert records[2]["window_start"] == "2024-01-20T10:01:00.000000Z"


def test_the_cap_counts_as_the_readings_do() -> None:
    data = random_readings(2)
    windows = WindowSpec(length_ns=S)
    with pytest.raises(TooManyGroups) as raw:
        aggregate(data, windows=windows, max_groups=100)
    with pytest.raises(TooManyGroups) as pushed:
        aggregate_partials(partial_rows(data, S, 4), S, windows=windows, max_groups=100)
    assert str(pushed.value) == str(raw.value)


def test_which_queries_partials_answer() -> None:
    assert mergeable(None, ())
    assert mergeable(WindowSpec(length_ns=S, step_ns=S, fill="linear"), ("min", "std", "first_timestamp"))
    assert not mergeable(None, ("p50",))
    assert not mergeable(WindowSpec(length_ns=S), ("late",))
    assert not mergeable(WindowSpec(session_gap_ns=S), ())
    assert not mergeable(WindowSpec(length_ns=S + 1), ())  # buckets are whole seconds


def test_no_rows_no_records() -> None:
    empty = partial_rows(Readings.empty(), S, 1)
    assert aggregate_records(aggregate_partials(empty, S, windows=WindowSpec(length_ns=S)), ()) == []
    assert processed_records(aggregate_partials_by_category(empty)) == []
    assert by_category_records(empty) == []
