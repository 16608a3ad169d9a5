"""The pure pandas layer, against values computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from functions.processing import AGGREGATE_COLUMNS, aggregate_by_category, processed_records
from functions.readings import Readings, raw_records
from functions.timestamps import format_timestamps
from tests.support.rows import readings

T0 = 1_705_744_800_000_000_000  # 2024-01-20T10:00:00Z in nanoseconds


def test_aggregates_match_hand_computed_values() -> None:
    data = readings(
        [
            (T0, 42.5, "A"),
            (T0 + 1_000_000_000, 10.0, "B"),
            (T0 + 2_000_000_000, 45.7, "A"),
            (T0 + 3_500_000_000, 20.0, "B"),
            (T0 + 3_000_000_000, 30.0, "B"),  # arrives late: last_timestamp is the latest event time
        ],
        dictionary=["B", "A"],  # dictionary order differs from the sorted output
    )
    assert processed_records(aggregate_by_category(data)) == [
        {"category": "A", "avg_value": (42.5 + 45.7) / 2, "count": 2, "last_timestamp": "2024-01-20T10:00:02.000000Z"},
        {"category": "B", "avg_value": 20.0, "count": 3, "last_timestamp": "2024-01-20T10:00:03.500000Z"},
    ]


def test_empty_buffer_gives_empty_list() -> None:
    assert processed_records(aggregate_by_category(Readings.empty())) == []
    assert raw_records(Readings.empty()) == []


def test_single_category_and_unused_dictionary_entries() -> None:
    data = readings([(T0, 1.0, "C"), (T0 + 5, 2.0, "C")], dictionary=["A", "B", "C"])
    records = processed_records(aggregate_by_category(data))
    assert records == [{"category": "C", "avg_value": 1.5, "count": 2, "last_timestamp": "2024-01-20T10:00:00.000000Z"}]


def reference_aggregates(data: Readings) -> pd.DataFrame:
    """The obvious computation: a column of names, groupby on it, a named aggregation."""
    names = data.categories
    return (
        pd.DataFrame(
            {"category": [names[c] for c in data.codes], "value": data.values, "timestamp": data.timestamps_ns}
        )
        .groupby("category")
        .agg(avg_value=("value", "mean"), count=("value", "size"), last_timestamp=("timestamp", "max"))
        .reset_index()
    )


@pytest.mark.parametrize(
    "names",
    [
        [f"cat{i}" for i in range(17)],
        # Unsorted, with entries no reading uses (the ingestor's dictionary only grows).
        ["zeta", "alpha", "unused-1", "Mid", "unused-2", "beta", *[f"spare{i}" for i in range(300)]],
    ],
)
def test_aggregation_matches_a_straightforward_reference(names: list[str]) -> None:
    rng = np.random.default_rng(7)
    n = 50_000
    used = [i for i, name in enumerate(names) if not name.startswith(("unused", "spare"))]
    data = Readings(
        rng.integers(T0, T0 + 10**12, n),
        rng.normal(50, 10, n),
        rng.choice(used, n).astype(np.uint16),
        names,
    )
    reference = reference_aggregates(data)
    result = aggregate_by_category(data)
    assert list(result.columns) == AGGREGATE_COLUMNS
    assert result["category"].tolist() == reference["category"].tolist()
    np.testing.assert_allclose(result["avg_value"], reference["avg_value"], rtol=1e-12)
    assert result["count"].tolist() == reference["count"].tolist()
    assert result["last_timestamp"].tolist() == reference["last_timestamp"].tolist()


def test_timestamps_are_utc_with_six_digits_truncated_from_nanoseconds() -> None:
    stamps = np.array([T0, T0 + 999_999_999, T0 + 1_000, 0], dtype=np.int64)
    assert format_timestamps(stamps).tolist() == [
        "2024-01-20T10:00:00.000000Z",
        "2024-01-20T10:00:00.999999Z",
        "2024-01-20T10:00:00.000001Z",
        "1970-01-01T00:00:00.000000Z",
    ]


def test_raw_records_keep_order_and_names() -> None:
    data = readings([(T0 + 2, 3.25, "B"), (T0, -1.5, "A")], dictionary=["A", "B"])
    assert raw_records(data) == [
        {"timestamp": "2024-01-20T10:00:00.000000Z", "value": 3.25, "category": "B"},
        {"timestamp": "2024-01-20T10:00:00.000000Z", "value": -1.5, "category": "A"},
    ]
