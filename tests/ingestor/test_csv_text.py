"""The ingestor's CSV lines (ingestor/csv_text.py, csv_lines.pyx) against the function's CSV writer
(functions/text_columns.py, itself checked against datetime.isoformat and Arrow's cast): byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from functions.text_columns import CSV_SHAPE, text_lines
from ingestor.csv_lines import value_texts
from ingestor.csv_text import csv_chunk

T0 = 1_705_744_800_000_000_000
NAMES = ["north", "south", "east", "west"]


def both(timestamps: np.ndarray, values: np.ndarray, codes: np.ndarray, names: list[str]) -> tuple[bytes, bytes]:
    ours = bytes(csv_chunk(timestamps, values, codes, names))
    reference = bytes(text_lines(timestamps, values, codes, names, CSV_SHAPE))
    return ours, reference


def assert_same(timestamps: np.ndarray, values: np.ndarray, codes: np.ndarray, names: list[str] = NAMES) -> None:
    ours, reference = both(timestamps, values, codes, names)
    if ours != reference:
        for line, (mine, theirs) in enumerate(zip(ours.splitlines(), reference.splitlines(), strict=False)):
            assert mine == theirs, (line, values[line])
    assert ours == reference


def times(seed: int, n: int) -> np.ndarray:
    return T0 + np.cumsum(np.random.default_rng(seed).integers(0, 5_000_000, n)).astype(np.int64)


@pytest.mark.parametrize(
    "make_values",
    [
        lambda rng, n: np.round(rng.normal(50, 10, n), 2),  # the generator's
        lambda rng, n: rng.normal(0, 1e6, n),  # every digit a double has
        lambda rng, n: np.round(rng.normal(0, 1e3, n)),  # integral
        lambda rng, n: rng.choice([0.0, -0.0, 1e-4, -1e-4, 9.99e-5, 1e9, 999999999.5, 1e-300, 1e300], n),
        lambda rng, n: np.array(
            [round(x, d) for x, d in zip(rng.uniform(-9, 9, n), rng.integers(1, 17, n).tolist(), strict=True)]
        ),  # 1 to 16 decimals
        lambda rng, n: rng.uniform(0, 1e-3, n),
        lambda rng, n: 2.0 ** rng.integers(-20, 40, n) * rng.choice([1, -1, 1.5, 0.1], n),
    ],
    ids=["two-decimals", "full-precision", "integral", "edges", "decimals", "tiny", "powers-of-two"],
)
def test_lines_are_the_functions_byte_for_byte(make_values: object) -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    values = make_values(rng, n)  # type: ignore[operator]
    assert_same(times(1, n), values, rng.integers(0, len(NAMES), n).astype(np.uint8))


def test_event_times_across_centuries_and_before_1970() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    stamps = rng.integers(np.iinfo(np.int64).min // 2, np.iinfo(np.int64).max // 2, n).astype(np.int64)
    stamps[:6] = [-1, 0, 1, -1_000, 951_782_400_000_000_000, 951_868_799_999_999_999]  # 2000-02-29 and so on
    assert_same(stamps, np.full(n, 1.5), np.zeros(n, np.uint8))


def test_wide_codes_and_one_name() -> None:
    names = [f"c{i}" for i in range(300)]
    codes = np.arange(1_000, dtype=np.uint16) % 300
    assert_same(times(5, 1_000), np.linspace(1, 2, 1_000), codes, names)
    assert_same(times(6, 3), np.array([1.25, 2.5, 0.0]), np.zeros(3, np.uint8), ["only"])


def test_nothing_is_an_empty_chunk() -> None:
    empty = np.empty(0, np.int64)
    assert bytes(csv_chunk(empty, np.empty(0), np.empty(0, np.uint8), NAMES)) == b""


def test_values_the_pass_cannot_place_are_left_to_arrow() -> None:
    values = np.array([0.0, 1.5, 1e-5, 1e12, 0.1 + 0.2, 123.25])
    assert value_texts(values)[2].tolist() == [0, 2, 3, 4]  # 0.1 + 0.2 has 17 digits
