"""Aggregates from sealed blocks' partials equal aggregates from the readings, whatever the buffer.

Random readings (out-of-order event times, duplicates, several categories, some empty) go into a
small ring with small blocks, sealed at random moments and evicted in the middle of blocks; then
the same query goes both ways: AggregateReadings' answer (partials from sealed blocks and from the
readings of the rest, through the wire form) merged by the function, and the matching readings
gathered as an export gathers them, aggregated by the function. Every field is compared: counts,
min, max and timestamps equal; averages, sums and standard deviations within 1e-12 relative to the
magnitude of the values (a sum of n values: n times that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from functions.partials import aggregate_partials, key_ns_for
from functions.processing import TooManyGroups, WindowSpec, aggregate, aggregate_records
from functions.readings import Readings
from functions.wire import decode_partials
from ingestor.pushdown import aggregate_partials as ingestor_partials
from ingestor.query import ReadingFilter, gather, matching_sequences
from ingestor.service import _partial_columns
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb

S = 1_000_000_000
T0 = 1_705_744_800 * S
NAMES = ("A", "B", "C", "D")
STATS = ("min", "max", "sum", "std", "first_timestamp")

reading = st.tuples(
    st.integers(-3, 40),  # second of event time
    st.sampled_from([0, 1, S // 2, S - 1]),  # within it: duplicates and second edges
    st.one_of(st.integers(-500, 500).map(float), st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)),
    st.sampled_from(NAMES[:3]),  # D never comes: an empty category to ask for
)
windows = st.one_of(
    st.none(),
    st.sampled_from([1, 2, 5, 60]).map(lambda s: WindowSpec(length_ns=s * S)),
    st.sampled_from([(2, 1), (10, 5), (60, 20)]).map(lambda ls: WindowSpec(length_ns=ls[0] * S, step_ns=ls[1] * S)),
    st.sampled_from(["null", "zero", "previous", "linear"]).map(lambda f: WindowSpec(length_ns=5 * S, fill=f)),
    st.integers(0, 10).map(lambda g: WindowSpec(length_ns=2 * S, grace_ns=g * S, final_only=g % 2 == 0)),
)


@dataclass
class Case:
    store: ReadingStore
    flt: ReadingFilter
    windows: WindowSpec | None
    stats: tuple[str, ...]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    store = ReadingStore(draw(st.integers(1, 40)), block_size=draw(st.sampled_from([1, 2, 3, 8])))
    stamps: list[int] = []
    for batch in draw(st.lists(st.lists(reading, min_size=1, max_size=25), min_size=1, max_size=6)):
        times = np.array([T0 + s * S + ns for s, ns, _, _ in batch], np.int64)
        values = np.array([v for _, _, v, _ in batch])
        store.append(Columns(times, values, store.encode_categories([c for *_, c in batch])))
        stamps += times.tolist()
        if draw(st.booleans()):
            store.seal_pending()
    edges = st.sampled_from(stamps).flatmap(lambda t: st.sampled_from([t - 1, t, t + 1]))
    since, until = draw(st.one_of(st.none(), edges)), draw(st.one_of(st.none(), edges))
    if since is not None and until is not None and since > until:
        since, until = until, since
    categories = frozenset(draw(st.sets(st.sampled_from(NAMES), max_size=2)))
    spec = draw(windows)
    if spec is not None:
        spec = WindowSpec(**{**_fields(spec), "since_ns": since, "until_ns": until})
    return Case(
        store, ReadingFilter(categories, since, until), spec, tuple(draw(st.lists(st.sampled_from(STATS), unique=True)))
    )


def _fields(spec: WindowSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in spec.__slots__}


def through_partials(case: Case) -> list[dict[str, Any]]:
    key_ns = key_ns_for(case.windows)
    found = ingestor_partials(case.store, case.flt, key_ns)
    response = pb.AggregateReadingsResponse(
        partials=_partial_columns(found.from_blocks, found.from_readings), categories=case.store.categories
    )
    rows = decode_partials(pb.AggregateReadingsResponse.FromString(response.SerializeToString()))
    frame = aggregate_partials(rows, key_ns, windows=case.windows, stats=case.stats, max_groups=500)
    return aggregate_records(frame, case.stats)


def through_readings(case: Case) -> tuple[list[dict[str, Any]], float]:
    store = case.store
    columns = gather(store, matching_sequences(store, case.flt, 0, store.total_ingested))
    # Free codes are named "" in the store's dictionary: distinct names here (no held reading has one).
    names = [name or f"free {code}" for code, name in enumerate(store.categories)]
    readings = Readings(columns.timestamps_ns, columns.values, columns.codes.astype(np.uint16), names)
    frame = aggregate(readings, windows=case.windows or WindowSpec(), stats=case.stats, max_groups=500)
    scale = float(np.abs(columns.values).max()) if len(columns) else 0.0
    return aggregate_records(frame, case.stats), scale


def assert_same(pushed: list[dict[str, Any]], raw: list[dict[str, Any]], scale: float) -> None:
    assert [list(record) for record in pushed] == [list(record) for record in raw]
    for got, want in zip(pushed, raw, strict=True):
        for key, expected in want.items():
            if isinstance(expected, float) and key != "count":
                assert got[key] is not None, (key, got, want)
                tolerance = 1e-12 * max(abs(expected), scale * (want["count"] if key == "sum" else 1))
                assert abs(got[key] - expected) <= tolerance, (key, got[key], expected, want)
            else:
                assert got[key] == expected, (key, got, want)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_partials_answer_exactly_what_the_readings_answer(case: Case) -> None:
    try:
        raw, scale = through_readings(case)
    except TooManyGroups as error:
        refusal = str(error)
    else:
        refusal = None
    if refusal is not None:
        with pytest.raises(TooManyGroups) as same:
            through_partials(case)
        assert str(same.value) == refusal
        return
    event(
        "sealed blocks answered"
        if ingestor_partials(case.store, case.flt, key_ns_for(case.windows)).blocks_used
        else "readings only"
    )
    assert_same(through_partials(case), raw, scale)
    assert case.store.total_ingested == case.store.buffered + case.store.evicted


@pytest.mark.slow  # seconds by design
def test_filters_on_every_block_edge() -> None:
    """since and until at, just before and just after every event time of a few sealed blocks,
    evicted in the middle of the oldest one: each way the same answer."""
    rng = np.random.default_rng(5)
    store = ReadingStore(30, block_size=4)
    times = T0 + np.sort(rng.integers(0, 20, 36)) * S // 2
    values = np.round(rng.normal(10, 3, 36), 2)
    store.append(Columns(times, values, store.encode_categories(rng.choice(list(NAMES[:3]), 36).tolist())))
    assert store.seal_pending() == 7  # blocks 2 to 8 are whole; block 1 lost two readings
    stamps = sorted(set(store.read(0, store.total_ingested).timestamps_ns.tolist()))
    used = 0
    for edge in [t + d for t in stamps for d in (-1, 0, 1)]:
        for flt in (ReadingFilter(since_ns=edge), ReadingFilter(until_ns=edge), ReadingFilter({"B"}, edge, edge + S)):
            for spec in (None, WindowSpec(length_ns=S)):
                case = Case(store, flt, spec, STATS)
                raw, scale = through_readings(case)
                assert_same(through_partials(case), raw, scale)
                used += ingestor_partials(store, flt, key_ns_for(spec)).blocks_used
    assert used > 0
