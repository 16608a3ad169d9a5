"""The crash tests' checks (tests/support/crashing.py) on made-up snapshots: they pass what a correct
ingestor holds and catch each way of getting it wrong."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ingestor.v1 import ingestor_pb2 as pb
from tests.support.crashing import SPAN, T0_NS, Batch, Ledger, Snapshot, check_snapshot

CAPACITY = 1_000
SIZES = (300, 400, 200, 250, 150)
"""1,300 readings: the first batch is evicted and 300 readings of the second."""


def acknowledged_batches(ledger: Ledger) -> list[Batch]:
    """Batches written one after another, each acknowledged before the next was sent."""
    batches = []
    for number, size in enumerate(SIZES):
        batch = ledger.new_batch(number % 2, size)
        batch.sent_at, batch.acked_at, batch.stored = 2.0 * number, 2.0 * number + 1, True
        batches.append(batch)
    return batches


def snapshot_of(batches: list[Batch], capacity: int = CAPACITY, total: int | None = None) -> Snapshot:
    """What an ingestor holds after storing ``batches`` in this order."""
    values = np.concatenate([batch.key * SPAN + np.arange(batch.size, dtype="<f8") for batch in batches])
    names = np.array([batch.category for batch in batches for _ in range(batch.size)], dtype=object)
    total = len(values) if total is None else total
    buffered = min(total, capacity)
    status = pb.GetStatusResponse(total_ingested=total, buffered=buffered, evicted=total - buffered)
    held = slice(len(values) - buffered, None)
    return Snapshot(status, values[held], T0_NS + values[held].astype("<i8"), names[held])


def test_what_a_correct_ingestor_holds_passes() -> None:
    ledger = Ledger()
    batches = acknowledged_batches(ledger)
    held = check_snapshot(snapshot_of(batches), ledger, CAPACITY)
    assert held == {batch.key for batch in batches[1:]}


def test_a_batch_in_flight_is_found_stored_when_held() -> None:
    ledger = Ledger()
    batches = acknowledged_batches(ledger)
    in_flight = ledger.new_batch(0, 10)
    in_flight.sent_at = 100.0
    check_snapshot(snapshot_of([*batches, in_flight]), ledger, CAPACITY)
    assert in_flight.stored is True


def swap_last_two(batches: list[Batch]) -> list[Batch]:
    return [*batches[:-2], batches[-1], batches[-2]]


def cut_the_middle_one(batches: list[Batch]) -> list[Batch]:
    middle = batches[3]
    cut = Batch(middle.key, middle.producer, middle.size - 1, middle.batch_id, middle.sent_at, middle.acked_at)
    return [*batches[:3], cut, batches[4]]


def never_sent(batches: list[Batch]) -> list[Batch]:
    return [*batches, Batch(999, 0, 5, "", 0.0)]


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        (lambda batches: [*batches[:3], batches[4]], "acknowledged batch 3 of 250 readings is missing"),
        (lambda batches: [*batches, batches[4]], "came back twice"),
        (cut_the_middle_one, "batch 3 of 250 readings came back as 249 readings"),
        (swap_last_two, "batch 3 was acknowledged before batch 4 was sent, yet is held after it"),
        (never_sent, "readings of batch 999, which was never sent"),
    ],
    ids=["lost", "twice", "half", "reordered", "never-sent"],
)
def test_each_defect_is_caught(defect: Callable[[list[Batch]], list[Batch]], message: str) -> None:
    ledger = Ledger()
    batches = acknowledged_batches(ledger)
    with pytest.raises(AssertionError, match=message):
        check_snapshot(snapshot_of(defect(batches)), ledger, CAPACITY)


def test_a_counter_that_does_not_match_the_stored_batches_is_caught() -> None:
    ledger = Ledger()
    batches = acknowledged_batches(ledger)
    with pytest.raises(AssertionError, match="total_ingested 1301, but the stored batches hold 1300 readings"):
        check_snapshot(snapshot_of(batches, total=sum(SIZES) + 1), ledger, CAPACITY)


def test_fewer_readings_than_the_capacity_while_more_were_stored_is_caught() -> None:
    ledger = Ledger()
    batches = acknowledged_batches(ledger)
    with pytest.raises(AssertionError, match="buffered 999"):
        check_snapshot(snapshot_of(batches, capacity=CAPACITY - 1), ledger, CAPACITY)


def test_a_reading_changed_since_an_earlier_restart_is_caught() -> None:
    ledger = Ledger()
    batches = acknowledged_batches(ledger)
    earlier = snapshot_of(batches)
    later = snapshot_of(batches)
    later.timestamps_ns[500] += 1
    with pytest.raises(AssertionError, match=f"reading {earlier.first_seq + 500} changed since an earlier restart"):
        check_snapshot(later, ledger, CAPACITY, previous=earlier)
