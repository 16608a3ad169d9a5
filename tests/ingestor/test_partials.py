"""Partial aggregates and their merge (ingestor/partials.py), against a loop over the readings."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from ingestor.bucket_partials import bucket_partials
from ingestor.partials import (
    PartialTable,
    compute_partials,
    empty_partials,
    merge_partials,
    partials_by_bucket,
    rekey,
    second_keys,
)

T0 = 1_705_744_800_000_000_000
EPS = np.finfo(np.float64).eps


def reference(
    times: np.ndarray, values: np.ndarray, codes: np.ndarray, keys: np.ndarray
) -> dict[tuple[int, int], dict[str, float]]:
    """Per (code, key), by a loop: exact sums with math.fsum, M2 around the exact mean."""
    groups: dict[tuple[int, int], list[tuple[int, float]]] = defaultdict(list)
    for t, v, c, k in zip(times.tolist(), values.tolist(), codes.tolist(), keys.tolist(), strict=True):
        groups[(c, k)].append((t, v))
    out = {}
    for group, items in groups.items():
        xs = [v for _, v in items]
        mean = math.fsum(xs) / len(xs)
        out[group] = {
            "count": len(xs),
            "total": math.fsum(xs),
            "minimum": min(xs),
            "maximum": max(xs),
            "first_ns": min(t for t, _ in items),
            "last_ns": max(t for t, _ in items),
            "mean": mean,
            "m2": math.fsum((x - mean) ** 2 for x in xs),
            "scale": max(abs(x) for x in xs),
        }
    return out


def assert_matches(table: PartialTable, expected: dict[tuple[int, int], dict[str, float]]) -> None:
    groups = list(zip(table.codes.tolist(), table.keys.tolist(), strict=True))
    assert groups == sorted(expected), "one row per (code, key), sorted"
    for row, group in enumerate(groups):
        want = expected[group]
        for name in ("count", "minimum", "maximum", "first_ns", "last_ns"):
            assert getattr(table, name)[row] == want[name], (group, name)
        n, scale = want["count"], want["scale"]
        assert abs(table.total[row] - want["total"]) <= 8 * EPS * scale * n
        assert abs(table.mean[row] - want["mean"]) <= 8 * EPS * scale
        # M2's rounding is that of the deviations: a few ulps of the values, times their spread.
        assert abs(table.m2[row] - want["m2"]) <= 1e-12 * (want["m2"] + scale * scale * EPS * n)


def random_readings(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = T0 + rng.integers(-5_000_000_000, 120_000_000_000, n)  # out of order, across two minutes
    values = np.round(rng.normal(50, 20, n), 2)
    codes = rng.integers(0, 4, n).astype(np.uint8)
    return times, values, codes


@pytest.mark.parametrize("seed", range(4))
def test_partials_per_second_match_a_loop(seed: int) -> None:
    times, values, codes = random_readings(seed, 3000)
    keys = second_keys(times)
    assert_matches(compute_partials(times, values, codes, keys), reference(times, values, codes, keys))


def test_partials_per_category_without_keys() -> None:
    times, values, codes = random_readings(7, 1000)
    table = compute_partials(times, values, codes)
    assert_matches(table, reference(times, values, codes, np.zeros(len(times), np.int64)))


@pytest.mark.parametrize("parts", [2, 3, 17])
def test_merging_chunks_equals_the_whole(parts: int) -> None:
    times, values, codes = random_readings(parts, 5000)
    keys = second_keys(times, 60)
    bounds = np.linspace(0, len(times), parts + 1).astype(int)
    chunks = [compute_partials(times[a:b], values[a:b], codes[a:b], keys[a:b]) for a, b in itertools.pairwise(bounds)]
    assert_matches(merge_partials(chunks), reference(times, values, codes, keys))


def test_rekey_seconds_into_minutes_and_into_categories() -> None:
    times, values, codes = random_readings(11, 4000)
    seconds = compute_partials(times, values, codes, second_keys(times))
    assert_matches(rekey(seconds, seconds.keys // 60), reference(times, values, codes, second_keys(times, 60)))
    whole = rekey(seconds, np.zeros(len(seconds), np.int64))
    assert_matches(whole, reference(times, values, codes, np.zeros(len(times), np.int64)))


def test_a_merged_std_is_stable_where_a_sum_of_squares_is_not() -> None:
    # Large offset, small spread: a sum of squares loses every digit of the variance.
    rng = np.random.default_rng(3)
    values = 1e9 + rng.normal(0, 1e-3, 4000)
    times = T0 + np.arange(4000, dtype=np.int64)
    codes = np.zeros(4000, np.uint8)
    chunks = [
        compute_partials(times[i : i + 250], values[i : i + 250], codes[i : i + 250]) for i in range(0, 4000, 250)
    ]
    merged = merge_partials(chunks)
    exact = reference(times, values, codes, np.zeros(4000, np.int64))[(0, 0)]
    # Means rounded to ulps of 1e9 bound it; a sum of squares is off by orders of magnitude.
    assert merged.m2[0] == pytest.approx(exact["m2"], rel=1e-4)
    naive = float(np.sum(values * values) - np.sum(values) ** 2 / 4000)
    assert abs(naive - exact["m2"]) > 0.5 * exact["m2"]


def test_groups_of_equal_values_have_no_spread_at_all() -> None:
    values = np.full(10, 0.1)
    codes = np.array([0] * 5 + [1] * 5, np.uint8)
    times = T0 + np.arange(10, dtype=np.int64)
    halves = [compute_partials(times[:3], values[:3], codes[:3]), compute_partials(times[3:], values[3:], codes[3:])]
    merged = merge_partials(halves)
    assert merged.m2.tolist() == [0.0, 0.0]
    assert merged.mean.tolist() == [0.1, 0.1]


def test_keys_far_apart_and_wide_codes() -> None:
    times = np.array([np.iinfo(np.int64).min + 1, 0, np.iinfo(np.int64).max, 5], np.int64)
    values = np.array([1.0, 2.0, 3.0, 4.0])
    codes = np.array([65535, 3, 65535, 3], np.uint16)
    keys = times  # keys of nanoseconds: their span does not fit the packed form
    assert_matches(compute_partials(times, values, codes, keys), reference(times, values, codes, keys))


def test_empty_inputs() -> None:
    empty = np.empty(0, np.int64)
    assert len(compute_partials(empty, np.empty(0), np.empty(0, np.uint8), empty)) == 0
    assert len(merge_partials([])) == 0
    assert len(merge_partials([empty_partials(), empty_partials()])) == 0


@pytest.mark.parametrize("seconds", [1, 60, 3600])
@pytest.mark.parametrize("code_dtype", [np.uint8, np.uint16, np.int64])
def test_partials_by_bucket_match_a_loop(seconds: int, code_dtype: type) -> None:
    times, values, codes = random_readings(seconds, 3000)
    codes = codes.astype(code_dtype) * (300 if code_dtype is not np.uint8 else 1)  # codes beyond a byte too
    table = partials_by_bucket(times, values, codes, seconds * 1_000_000_000)
    assert_matches(table, reference(times, values, codes, second_keys(times, seconds)))


def test_partials_by_bucket_floor_event_times_before_1970() -> None:
    times = np.array([-1, -60_000_000_000, -60_000_000_001, 0, 59_999_999_999, 60_000_000_000, -1], np.int64)
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    codes = np.array([0, 0, 0, 0, 1, 1, 1], np.uint8)
    minutes = [t // 60_000_000_000 for t in times.tolist()]  # Python's floor, by hand: -1, -1, -2, 0, 0, 1, -1
    assert minutes == [-1, -1, -2, 0, 0, 1, -1]
    table = partials_by_bucket(times, values, codes, 60_000_000_000)
    assert_matches(table, reference(times, values, codes, np.array(minutes, np.int64)))


def test_partials_by_bucket_over_a_wide_box_fall_back_to_sorting() -> None:
    """Readings spread over more (code, bucket) cells than the compiled pass counts in: same answer."""
    rng = np.random.default_rng(5)
    times = T0 + rng.integers(0, 10**6, 2000) * 1_000_000_000  # about 10**6 seconds
    values = np.round(rng.normal(0, 1, 2000), 3)
    codes = rng.integers(0, 3, 2000).astype(np.uint16)
    table = partials_by_bucket(times, values, codes, 1_000_000_000)
    assert_matches(table, reference(times, values, codes, second_keys(times)))


def test_the_compiled_pass_counts_in_a_small_box_only() -> None:
    times, values, codes = random_readings(4, 1000)  # 4 codes over about 3 minutes
    assert bucket_partials(times, values, codes, 60_000_000_000, 1 << 16) is not None
    assert bucket_partials(times, values, codes, 60_000_000_000, 8) is None  # 4 codes x 3 minutes > 8
    with pytest.raises(ValueError, match="positive bucket"):
        bucket_partials(times, values, codes, 0, 1 << 16)


def test_partials_by_bucket_of_one_reading_and_of_none() -> None:
    one = partials_by_bucket(np.array([T0], np.int64), np.array([2.5]), np.array([7], np.uint8), 60_000_000_000)
    assert (one.codes.tolist(), one.keys.tolist(), one.count.tolist()) == ([7], [T0 // 60_000_000_000], [1])
    assert (one.total.tolist(), one.mean.tolist(), one.m2.tolist()) == ([2.5], [2.5], [0.0])
    empty = np.empty(0, np.int64)
    assert len(partials_by_bucket(empty, np.empty(0), np.empty(0, np.uint8), 60_000_000_000)) == 0


def test_partials_by_bucket_read_strided_columns() -> None:
    """Columns that are views with a step (a ring's slice can be one) are read, not refused."""
    times, values, codes = random_readings(9, 4000)
    table = partials_by_bucket(times[::2], values[::2], codes[::2], 60_000_000_000)
    assert_matches(table, reference(times[::2], values[::2], codes[::2], second_keys(times[::2], 60)))


def test_sorted_and_dense_grouping_agree() -> None:
    """A few cells are grouped by bincount, many by sorting: same partials either way."""
    times, values, codes = random_readings(21, 4000)
    spread = T0 + np.random.default_rng(2).integers(0, 10**6, 4000) * 1_000_000_000  # 4000 seconds apart or so
    for keys in (second_keys(times), second_keys(spread)):
        expected = reference(spread, values, codes, keys)
        assert_matches(compute_partials(spread, values, codes, keys), expected)
    # The same readings by minute (few cells) and with the minute spread far apart (many cells).
    minutes = second_keys(times, 60)
    far = minutes * 10**6
    dense, sparse = compute_partials(times, values, codes, minutes), compute_partials(times, values, codes, far)
    assert dense.count.tolist() == sparse.count.tolist()
    assert dense.keys.tolist() == (sparse.keys // 10**6).tolist()
    for name in ("total", "mean", "m2", "minimum", "maximum", "first_ns", "last_ns"):
        np.testing.assert_allclose(getattr(dense, name), getattr(sparse, name), rtol=1e-13)
