"""The columnar ring buffer: order, eviction, exact accounting, the category dictionary."""

from __future__ import annotations

import numpy as np
import pytest

from ingestor.categories import MAX_CATEGORIES, check_category
from ingestor.errors import CategoryLimitError, InvalidArgument
from ingestor.store import Columns, ReadingStore


def batch(store: ReadingStore, start: int, count: int, category: str = "A") -> Columns:
    seq = np.arange(start, start + count)
    return Columns(seq * 10, seq.astype(np.float64), store.encode_categories([category] * count))


def test_keeps_arrival_order_and_counts_exactly() -> None:
    store = ReadingStore(capacity=10)
    store.append(batch(store, 0, 4))
    assert (store.total_ingested, store.buffered, store.evicted) == (4, 4, 0)
    assert store.read(0, 4).values.tolist() == [0, 1, 2, 3]


def test_evicts_oldest_first_across_the_wrap() -> None:
    store = ReadingStore(capacity=5)
    for start in range(0, 13, 3):  # batches of 3 wrap around the ring several times
        store.append(batch(store, start, 3))
    assert store.total_ingested == 15
    assert store.buffered == 5
    assert store.evicted == 10
    assert store.total_ingested == store.buffered + store.evicted
    newest = store.read(0, store.total_ingested)
    assert newest.values.tolist() == [10, 11, 12, 13, 14]
    assert newest.timestamps_ns.tolist() == [100, 110, 120, 130, 140]
    assert [len(run) for run in store.views(10, 15)] in ([5], [3, 2], [2, 3], [4, 1], [1, 4])


def test_a_batch_larger_than_the_capacity_keeps_its_newest() -> None:
    store = ReadingStore(capacity=4)
    store.append(batch(store, 0, 3))
    store.append(batch(store, 3, 10))
    assert (store.total_ingested, store.buffered, store.evicted) == (13, 4, 9)
    assert store.read(0, 13).values.tolist() == [9, 10, 11, 12]


def test_read_clamps_to_what_is_held() -> None:
    store = ReadingStore(capacity=3)
    store.append(batch(store, 0, 5))
    assert store.clamp(0, 100) == (2, 5)
    assert store.read(0, 3).values.tolist() == [2]
    assert len(store.read(7, 9)) == 0


def test_category_dictionary_is_stable_and_bounded() -> None:
    store = ReadingStore(capacity=10)
    assert store.encode_categories(["B", "A", "B"]).tolist() == [0, 1, 0]
    assert store.encode_categories(["A", "C"]).tolist() == [1, 2]
    assert list(store.categories) == ["B", "A", "C"]
    store.encode_categories(f"c{i}" for i in range(MAX_CATEGORIES - 3))
    with pytest.raises(CategoryLimitError, match="at most 65536"):
        store.encode_categories(["one-too-many", "B"])
    assert len(store.categories) == MAX_CATEGORIES  # nothing half-added


def test_memory_is_17_bytes_a_reading_up_to_256_categories_then_18() -> None:
    store = ReadingStore(capacity=1000)
    store.encode_categories(f"c{i}" for i in range(256))
    assert sum(array.itemsize for array in store.arrays) == 17
    store.encode_categories(["c256"])
    assert sum(array.itemsize for array in store.arrays) == 18
    assert sum(array.nbytes for array in store.arrays) == 18 * 1000


def test_widening_the_codes_keeps_every_held_reading_and_its_category() -> None:
    store = ReadingStore(capacity=7)
    store.encode_categories(f"c{i}" for i in range(250))
    names = [f"c{i}" for i in range(244, 250)] * 2  # the highest narrow codes, across the wrap
    for start in range(0, 12, 4):
        seq = np.arange(start, start + 4)
        store.append(Columns(seq * 10, seq / 2, store.encode_categories(names[start : start + 4])))
    held = store.read(0, store.total_ingested)
    assert held.codes.dtype == np.uint8
    store.encode_categories(f"d{i}" for i in range(7))  # 257 names: the codes no longer fit a byte
    seq = np.arange(12, 14)
    store.append(Columns(seq * 10, seq / 2, store.encode_categories(["d6", "c249"])))
    after = store.read(0, store.total_ingested)
    assert after.codes.dtype == np.uint16
    assert (store.total_ingested, store.buffered) == (14, 7)
    assert after.timestamps_ns.tolist() == list(range(70, 140, 10))
    assert after.values.tolist() == [n / 2 for n in range(7, 14)]
    assert [store.categories[code] for code in after.codes] == [*names[7:], "d6", "c249"]


@pytest.mark.parametrize(
    ("name", "valid"),
    [("A", True), ("sensor_1.temp-x", True), ("x" * 64, True), ("", False), ("x" * 65, False), ("a b", False)],
)
def test_category_names(name: str, valid: bool) -> None:
    if valid:
        check_category(name)
    else:
        with pytest.raises(InvalidArgument, match=r"^readings\[3\]\.category: category .* must be 1 to 64 characters"):
            check_category(name, "readings[3].category")


def test_restore_refills_an_empty_store_with_its_counters() -> None:
    earlier = ReadingStore(capacity=4)
    earlier.append(batch(earlier, 0, 7, "B"))
    store = ReadingStore(capacity=4)
    store.restore(earlier.categories, earlier.read(0, 7), earlier.total_ingested)
    assert (store.total_ingested, store.buffered, store.evicted) == (7, 4, 3)
    assert list(store.categories) == ["B"]
    store.append(batch(store, 7, 2, "B"))
    assert store.read(0, 9).values.tolist() == [5, 6, 7, 8]


def test_restore_with_fewer_readings_than_the_capacity_counts_the_rest_as_evicted() -> None:
    store = ReadingStore(capacity=10)
    older = batch(ReadingStore(capacity=10), 97, 3)
    store.restore(["A"], older, total_ingested=100)
    assert (store.total_ingested, store.buffered, store.evicted) == (100, 3, 97)
    assert store.clamp(0, 100) == (97, 100)
    store.append(batch(store, 100, 9))
    assert (store.total_ingested, store.buffered, store.evicted) == (109, 10, 99)
    assert store.read(0, 109).values.tolist() == list(range(99, 109))


def test_only_an_empty_store_can_be_restored() -> None:
    store = ReadingStore(capacity=10)
    store.append(batch(store, 0, 1))
    with pytest.raises(ValueError, match="empty"):
        store.restore(["A"], batch(store, 0, 1), 1)
