"""Filtered selection over the ring buffer, and the same filters through ListReadings and ExportReadings."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from functions.wire import decode_export
from ingestor.query import ReadingFilter, gather, matching_sequences, select_page
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

T0 = 1_705_744_800  # 2024-01-20T10:00:00Z
S = 1_000_000_000


def filled(capacity: int, count: int) -> ReadingStore:
    """Reading i: event time i s, value i, category 'ABC'[i % 3]."""
    store = ReadingStore(capacity)
    seq = np.arange(count)
    names = ["ABC"[i % 3] for i in range(count)]
    store.append(Columns(seq * S, seq.astype(np.float64), store.encode_categories(names)))
    return store


def test_masks_select_categories_and_half_open_time_ranges() -> None:
    store = filled(100, 30)
    flt = ReadingFilter(frozenset({"A", "C"}), since_ns=3 * S, until_ns=12 * S)
    assert matching_sequences(store, flt, 0, 30).tolist() == [3, 5, 6, 8, 9, 11]
    assert matching_sequences(store, ReadingFilter(frozenset({"nope"})), 0, 30).tolist() == []
    assert matching_sequences(store, ReadingFilter(), 0, 30).tolist() == list(range(30))


def test_selection_across_the_wrap_skips_evicted_readings() -> None:
    store = filled(10, 25)  # holds 15..24, wrapped
    flt = ReadingFilter(frozenset({"B"}))
    assert matching_sequences(store, flt, 0, 25).tolist() == [16, 19, 22]
    page = select_page(store, flt, limit=2)
    assert (page.sequences.tolist(), page.next_sequence) == ([19, 22], 19)
    assert gather(store, page.sequences).values.tolist() == [19.0, 22.0]
    older = select_page(store, flt, before_seq=19, limit=2)
    assert (older.sequences.tolist(), older.next_sequence) == ([16], None)
    forward = select_page(store, flt, after_seq=17, limit=1, oldest_first=True)
    assert (forward.sequences.tolist(), forward.next_sequence) == ([19], 20)
    # Evicted after selection: gathered later, they are skipped, not replaced by newer readings.
    store.append(Columns(np.array([99 * S]), np.array([99.0]), store.encode_categories(["B"])))
    assert gather(store, np.array([15, 16, 19])).values.tolist() == [16.0, 19.0]
    store.append(Columns(np.array([99 * S]), np.array([99.0]), store.encode_categories(["B"])))
    assert gather(store, np.array([15, 16, 19])).values.tolist() == [19.0]


def reference_page(
    store: ReadingStore, after_seq: int, before_seq: int | None, limit: int, oldest_first: bool
) -> tuple[list[int], int | None]:
    """What a page is by definition: every held sequence number in the range, then cut to the limit."""
    stop = store.total_ingested if before_seq is None else before_seq
    held = [seq for seq in range(max(after_seq, store.evicted), min(stop, store.total_ingested))]
    if not limit or len(held) <= limit:
        return held, None
    if oldest_first:
        return held[:limit], held[limit - 1] + 1
    return held[-limit:], held[-limit]


@pytest.mark.parametrize("oldest_first", [False, True])
@pytest.mark.parametrize("limit", [0, 1, 4, 15, 100])
@pytest.mark.parametrize(("after_seq", "before_seq"), [(0, None), (17, None), (0, 20), (16, 23), (30, None)])
def test_an_unfiltered_page_is_a_range_of_held_sequence_numbers(
    after_seq: int, before_seq: int | None, limit: int, oldest_first: bool
) -> None:
    store = filled(10, 25)  # holds 15..24, wrapped
    page = select_page(
        store, ReadingFilter(), after_seq=after_seq, before_seq=before_seq, limit=limit, oldest_first=oldest_first
    )
    assert (page.sequences.tolist(), page.next_sequence) == reference_page(
        store, after_seq, before_seq, limit, oldest_first
    )


def reading(seconds: int, value: float, category: str) -> pb.Reading:
    return pb.Reading(timestamp={"seconds": seconds}, value=value, category=category)


def test_list_readings_filters_and_binds_its_tokens(stub: pb_grpc.IngestorServiceStub) -> None:
    written = [reading(T0 + i, i, "ABC"[i % 3]) for i in range(300)]
    stub.WriteReadings(pb.WriteReadingsRequest(readings=written))
    request = pb.ListReadingsRequest(page_size=40, categories=["B"], since={"seconds": T0 + 10})
    pages = []
    while True:
        page = stub.ListReadings(request)
        pages.append([r.value for r in page.readings])
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    expected = [float(i) for i in range(10, 300) if i % 3 == 1]
    assert [v for p in reversed(pages) for v in p] == expected
    assert all(p == sorted(p) for p in pages)
    assert [len(p) for p in pages] == [40, 40, 17]

    first = stub.ListReadings(pb.ListReadingsRequest(page_size=10, categories=["B"]))
    for other in (pb.ListReadingsRequest(categories=["C"]), pb.ListReadingsRequest()):
        other.page_token = first.next_page_token
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListReadings(other)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "issued for other filters" in caught.value.details()


def test_export_filters_and_continues_from_next_sequence(stub: pb_grpc.IngestorServiceStub) -> None:
    stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(T0 + i, i, "ABC"[i % 3]) for i in range(300)]))
    request = pb.ExportReadingsRequest(
        categories=["A", "C"], until={"seconds": T0 + 200}, max_readings=50, oldest_first=True, chunk_size=16
    )
    seen: list[float] = []
    while True:
        messages = list(stub.ExportReadings(request))
        seen.extend(decode_export(messages).values.tolist())
        if not messages[-1].HasField("next_sequence"):
            break
        request.after_sequence = messages[-1].next_sequence
    assert seen == [float(i) for i in range(200) if i % 3 != 1]

    newest = list(stub.ExportReadings(pb.ExportReadingsRequest(categories=["A"], max_readings=5)))
    assert decode_export(newest).values.tolist() == [285.0, 288.0, 291.0, 294.0, 297.0]
    assert newest[-1].next_sequence == 285


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.ExportReadingsRequest(categories=["no spaces"]), "categories[0]"),
        (pb.ExportReadingsRequest(since={"seconds": T0 + 1}, until={"seconds": T0}), "since must not be after until"),
    ],
)
def test_bad_filters_are_invalid_argument(
    stub: pb_grpc.IngestorServiceStub, request_: pb.ExportReadingsRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.ExportReadings(request_))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
