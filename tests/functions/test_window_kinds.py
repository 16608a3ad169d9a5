"""Hopping and session windows, closed windows, emit=final and gap filling, against references written
here as plain loops over the readings (not the pandas calls of functions/processing.py)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from functions.processing import TooManyGroups, WindowSpec, aggregate, aggregate_records
from functions.readings import Readings
from functions.timestamps import format_timestamps
from tests.support.references import late_flags, percentile

T0 = 1_705_744_800_000_000_000  # 2024-01-20T10:00:00Z
S = 1_000_000_000
STATS = ["min", "max", "sum", "std", "first_timestamp", "p50", "p99", "late"]


def iso(ns: int) -> str:
    return str(format_timestamps(np.array([ns]))[0])


def summary(items: list[tuple[int, float, int]]) -> dict[str, Any]:
    """The statistics of one window's (timestamp, value, late) items, by hand."""
    values = [v for _, v, _ in items]
    stamps = [t for t, _, _ in items]
    return {
        "avg_value": statistics.fmean(values),
        "count": len(items),
        "last_timestamp": iso(max(stamps)),
        "min": min(values),
        "max": max(values),
        "sum": math.fsum(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "first_timestamp": iso(min(stamps)),
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "late": sum(late for _, _, late in items),
    }


def make(rows: list[tuple[int, float, str]]) -> Readings:
    """Readings in the given (arrival) order, with their late flags as the ingestor computes them."""
    names = sorted({c for _, _, c in rows}, reverse=True)  # a dictionary not in name order
    return Readings(
        np.array([t for t, _, _ in rows], dtype=np.int64),
        np.array([v for _, v, _ in rows]),
        np.array([names.index(c) for _, _, c in rows], dtype=np.uint16),
        names,
        np.array(late_flags([t for t, _, _ in rows]), dtype=np.uint8),
    )


def rows_of(data: Readings) -> list[tuple[int, float, str, int]]:
    assert data.late is not None
    return [
        (t, v, data.categories[c], late)
        for t, v, c, late in zip(
            data.timestamps_ns.tolist(), data.values.tolist(), data.codes.tolist(), data.late.tolist(), strict=True
        )
    ]


def assert_records(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(r["window_start"], r["category"]) for r in got] == [(r["window_start"], r["category"]) for r in expected]
    for record, reference in zip(got, expected, strict=True):
        assert list(record) == list(reference), (record, reference)
        for key, value in reference.items():
            if isinstance(value, float) and record[key] is not None:
                assert record[key] == pytest.approx(value, rel=1e-9, abs=1e-9), (key, record, reference)
            else:
                assert record[key] == value, (key, record, reference)


def windows_reference(
    data: Readings, length: int, step: int, grace: int | None = None, final: bool = False
) -> list[dict[str, Any]]:
    """Every reading in each window [j*step, j*step + length) that holds it; then closed and emit."""
    groups: dict[tuple[int, str], list[tuple[int, float, int]]] = defaultdict(list)
    for t, v, c, late in rows_of(data):
        j = t // step
        while j * step + length > t:  # every window that holds t, walking back one step at a time
            groups[(j * step, c)].append((t, v, late))
            j -= 1
    watermark = max(data.timestamps_ns.tolist())
    records = []
    for (start, category), items in sorted(groups.items()):
        record = {"category": category, **summary(items), "window_start": iso(start), "window_end": iso(start + length)}
        closed = start + length + (grace or 0) <= watermark
        if final and not closed:
            continue
        if grace is not None or final:
            record["closed"] = closed
        records.append(order(record))
    return records


def order(record: dict[str, Any]) -> dict[str, Any]:
    keys = ["category", "avg_value", "count", "last_timestamp", "window_start", "window_end", "closed", *STATS]
    return {key: record[key] for key in keys if key in record}


def random_readings(seed: int, n: int, span_s: int, categories: str = "xyz") -> Readings:
    rng = np.random.default_rng(seed)
    rows = [
        (
            T0
            + int(rng.integers(0, span_s * S)) // S * S * int(rng.random() < 0.3)  # some exactly on seconds
            + int(rng.integers(0, span_s * S)) * int(rng.random() >= 0.3),
            float(np.round(rng.normal(50, 10), 3)),
            str(rng.choice(list(categories))),
        )
        for _ in range(n)
    ]
    rows = [(max(t, T0), v, c) for t, v, c in rows]
    rows.append((T0 + span_s * S // 2, 7.0, "solo"))  # a category with one reading
    return make(rows)


@pytest.mark.parametrize(("length", "step"), [(60, 10), (10, 5), (30, 30), (3, 1), (7 * 60, 60)])
def test_hopping_windows_match_the_reference(length: int, step: int) -> None:
    data = random_readings(length * 7 + step, 800, 600)
    got = aggregate_records(aggregate(data, windows=WindowSpec(length * S, step * S), stats=STATS), STATS)
    assert_records(got, windows_reference(data, length * S, step * S))


def test_hopping_with_step_equal_to_the_window_is_tumbling_byte_for_byte() -> None:
    data = random_readings(3, 500, 300)
    tumbling = aggregate_records(aggregate(data, window_ns=60 * S, stats=STATS), STATS)
    assert aggregate_records(aggregate(data, windows=WindowSpec(60 * S, 60 * S), stats=STATS), STATS) == tumbling


def test_out_of_order_readings_on_boundaries_land_in_every_window_of_their_event_time() -> None:
    rows = [
        (T0 + 20 * S, 1.0, "A"),
        (T0, 2.0, "A"),  # late, exactly on a boundary: starts windows at 10:00:00 (and is in 09:59:50's)
        (T0 + 10 * S, 4.0, "A"),  # late, on a boundary
        (T0 + 10 * S - 1, 8.0, "B"),  # late, the last nanosecond before a boundary
        (T0 + 30 * S, 16.0, "A"),
    ]
    data = make(rows)
    got = aggregate_records(aggregate(data, windows=WindowSpec(20 * S, 10 * S), stats=["late"]), ["late"])
    assert [(r["window_start"][11:19], r["category"], r["count"], r["late"]) for r in got] == [
        ("09:59:50", "A", 1, 1),
        ("09:59:50", "B", 1, 1),
        ("10:00:00", "A", 2, 2),
        ("10:00:00", "B", 1, 1),
        ("10:00:10", "A", 2, 1),
        ("10:00:20", "A", 2, 0),
        ("10:00:30", "A", 1, 0),
    ]
    assert_records(
        got, [{k: r[k] for k in (*r.keys(),) if k in got[0]} for r in windows_reference(data, 20 * S, 10 * S)]
    )


def sessions_reference(data: Readings, gap: int, grace: int | None = None, final: bool = False) -> list[dict[str, Any]]:
    by_category: dict[str, list[tuple[int, float, int]]] = defaultdict(list)
    for t, v, c, late in rows_of(data):
        by_category[c].append((t, v, late))
    watermark = max(data.timestamps_ns.tolist())
    records = []
    for category, items in by_category.items():
        items.sort(key=lambda item: item[0])
        session = [items[0]]
        for item in [*items[1:], None]:
            if item is not None and item[0] - session[-1][0] < gap:
                session.append(item)
                continue
            end = session[-1][0] + gap
            record = {
                "category": category,
                **summary(session),
                "window_start": iso(session[0][0]),
                "window_end": iso(end),
            }
            if grace is not None or final:
                record["closed"] = end + (grace or 0) <= watermark
            if not final or record["closed"]:
                records.append(order(record))
            session = [item] if item is not None else []
    return sorted(records, key=lambda r: (r["window_start"], r["category"]))


@pytest.mark.parametrize("gap_s", [1, 5, 30, 120])
def test_sessions_match_the_reference(gap_s: int) -> None:
    data = random_readings(gap_s, 400, 900)
    got = aggregate_records(aggregate(data, windows=WindowSpec(session_gap_ns=gap_s * S), stats=STATS), STATS)
    assert_records(got, sessions_reference(data, gap_s * S))


def test_a_reading_exactly_one_gap_later_starts_a_new_session() -> None:
    data = make([(T0, 1.0, "A"), (T0 + 10 * S, 2.0, "A"), (T0 + 20 * S - 1, 3.0, "A"), (T0 + 5 * S, 4.0, "B")])
    got = aggregate_records(aggregate(data, windows=WindowSpec(session_gap_ns=10 * S, grace_ns=0)), [])
    assert [(r["category"], r["count"], r["window_start"][11:], r["window_end"][11:], r["closed"]) for r in got] == [
        ("A", 1, "10:00:00.000000Z", "10:00:10.000000Z", True),
        ("B", 1, "10:00:05.000000Z", "10:00:15.000000Z", True),
        ("A", 2, "10:00:10.000000Z", "10:00:29.999999Z", False),
    ]


@pytest.mark.parametrize("grace_s", [0, 15, 3600])
@pytest.mark.parametrize("final", [False, True])
def test_closed_and_emit_final_for_every_kind(grace_s: int, final: bool) -> None:
    data = random_readings(grace_s + 1, 300, 200)
    grace = grace_s * S
    for length, step in ((30, 30), (30, 10)):
        spec = WindowSpec(length * S, step * S, grace_ns=grace, final_only=final)
        got = aggregate_records(aggregate(data, windows=spec, stats=STATS), STATS)
        assert_records(got, windows_reference(data, length * S, step * S, grace, final))
    spec = WindowSpec(session_gap_ns=20 * S, grace_ns=grace, final_only=final)
    got = aggregate_records(aggregate(data, windows=spec, stats=STATS), STATS)
    assert_records(got, sessions_reference(data, 20 * S, grace, final))


def fill_reference(
    data: Readings, length: int, step: int, mode: str, since: int | None = None, until: int | None = None
) -> list[dict[str, Any]]:
    present = {(r["category"], r["window_start"]): r for r in windows_reference(data, length, step)}
    numbers: dict[str, list[int]] = defaultdict(list)
    for category, start in present:
        numbers[category].append(int(np.datetime64(start.rstrip("Z"), "ns").astype(np.int64)) // step)
    value_keys = ["avg_value", "min", "max", "sum", "std", "p50", "p99"]
    records = []
    for category, found in numbers.items():
        first = min(found) if since is None else (since - length) // step + 1
        last = max(found) if until is None else -(-until // step) - 1
        series = []
        for j in range(first, last + 1):
            record = present.get((category, iso(j * step)))
            series.append(dict(record) if record is not None else None)
        for position, record in enumerate(series):
            if record is not None:
                continue
            empty: dict[str, Any] = {"category": category, "count": 0, "late": 0}
            empty["window_start"], empty["window_end"] = (
                iso((first + position) * step),
                iso((first + position) * step + length),
            )
            before = next((r for r in reversed(series[:position]) if r is not None and r["count"]), None)
            after = next((r for r in series[position + 1 :] if r is not None and r["count"]), None)
            for key in [*value_keys, "last_timestamp", "first_timestamp"]:
                empty[key] = None
            if mode == "zero":
                empty.update(dict.fromkeys(value_keys, 0.0))
            elif mode == "previous" and before is not None:
                empty.update({key: before[key] for key in [*value_keys, "last_timestamp", "first_timestamp"]})
            elif mode == "linear" and before is not None and after is not None:
                i0 = series.index(before)
                i1 = series.index(after)
                for key in value_keys:
                    if before[key] is not None and after[key] is not None:
                        empty[key] = before[key] + (after[key] - before[key]) * (position - i0) / (i1 - i0)
            series[position] = empty
        records += [order(r) for r in series]
    return sorted(records, key=lambda r: (r["window_start"], r["category"]))


@pytest.mark.parametrize("mode", ["null", "zero", "previous", "linear"])
@pytest.mark.parametrize(("length", "step"), [(10, 10), (20, 5)])
def test_every_fill_mode_matches_the_reference(mode: str, length: int, step: int) -> None:
    # Sparse readings with long gaps, so that most windows are empty.
    rng = np.random.default_rng(len(mode) + step)
    rows = [
        (T0 + int(rng.integers(0, 400)) * S, float(rng.integers(0, 100)), str(rng.choice(["p", "q"])))
        for _ in range(12)
    ]
    data = make([*rows, (T0 + 100 * S, 5.0, "one")])
    spec = WindowSpec(length * S, step * S, fill=mode)
    got = aggregate_records(aggregate(data, windows=spec, stats=STATS), STATS)
    assert_records(got, fill_reference(data, length * S, step * S, mode))
    since, until = T0 - 95 * S, T0 + 505 * S
    spec = WindowSpec(length * S, step * S, fill=mode, since_ns=since, until_ns=until)
    got = aggregate_records(aggregate(data, windows=spec, stats=STATS), STATS)
    assert_records(got, fill_reference(data, length * S, step * S, mode, since, until))
    assert all(r["window_end"] > iso(since) and r["window_start"] < iso(until) for r in got)


def test_filled_windows_are_closed_by_the_watermark_and_emit_final_keeps_those() -> None:
    data = make([(T0, 1.0, "A"), (T0 + 50 * S, 3.0, "A")])
    spec = WindowSpec(10 * S, fill="zero", final_only=True, until_ns=T0 + 100 * S)
    got = aggregate_records(aggregate(data, windows=spec), [])
    assert [(r["window_start"][14:19], r["count"], r["avg_value"], r["closed"]) for r in got] == [
        ("00:00", 1, 1.0, True),
        ("00:10", 0, 0.0, True),
        ("00:20", 0, 0.0, True),
        ("00:30", 0, 0.0, True),
        ("00:40", 0, 0.0, True),
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (WindowSpec(10 * S), 22),  # one a reading
        (WindowSpec(30 * S, 10 * S), 64),  # three a reading, the last two readings sharing two
        (WindowSpec(session_gap_ns=5 * S), 22),
        (WindowSpec(10 * S, fill="null"), 102),  # 10:00:00 to 10:16:50, every 10 s
        (WindowSpec(10 * S, fill="null", since_ns=T0 - 1000 * S, until_ns=T0 + 1000 * S), 200),
        (WindowSpec(10 * S, fill="null", final_only=True), 101),  # all but the newest, still open
    ],
    ids=["tumbling", "hopping", "session", "fill", "fill-since-until", "fill-final"],
)
def test_the_cap_counts_what_every_kind_would_have_answered(spec: WindowSpec, expected: int) -> None:
    data = make(
        [(T0 + i * 50 * S, float(i), "A") for i in range(20)] + [(T0 + 1000 * S, 1.0, "A"), (T0 + 1010 * S, 1.0, "A")]
    )
    answer = aggregate(data, windows=spec)
    assert len(answer) == expected
    with pytest.raises(TooManyGroups, match=f"^{expected} result objects, more than {expected - 1}$"):
        aggregate(data, windows=spec, max_groups=expected - 1)
