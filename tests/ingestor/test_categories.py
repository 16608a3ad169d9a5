"""The category dictionary holds the names in use only: writers cannot fill it for everyone."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from devtools.processes import ThreadedIngestor
from devtools.waiting import wait_until
from functions.wire import decode_export
from ingestor.categories import FREE, MAX_CATEGORIES, CategoryDictionary, StreamDictionary
from ingestor.errors import CategoryLimitError
from ingestor.intake import Intake
from ingestor.journal import Journal
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http
from tests.support.factories import MakeIngestor, MakeProcess, MakeStack

T0_NS = 1_705_744_800 * 1_000_000_000


def named(store: ReadingStore, names: list[str], first_value: int = 0) -> Columns:
    values = np.arange(first_value, first_value + len(names), dtype=np.float64)
    return Columns(T0_NS + values.astype(np.int64), values, store.encode_categories(names))


def held_names(store: ReadingStore) -> list[str]:
    held = store.read(0, store.total_ingested)
    return [store.categories[code] for code in held.codes.tolist()]


def in_use(store: ReadingStore) -> set[str]:
    return {name for name in store.categories if name != FREE}


def test_a_name_is_dropped_with_its_last_held_reading_and_its_code_reused() -> None:
    store = ReadingStore(capacity=4)
    store.append(named(store, ["A", "B", "B", "C"]))
    store.append(named(store, ["D"]))  # evicts the only A
    assert in_use(store) == {"B", "C", "D"}
    store.append(named(store, ["E"]))  # evicts one B of two: B stays; E takes the code A had
    assert in_use(store) == {"B", "C", "D", "E"}
    assert (store.dictionary.slots, store.dictionary.code("E")) == (4, 0)
    store.append(named(store, ["F", "F"]))  # evicts the last B and C, after F was given a new code
    assert in_use(store) == {"D", "E", "F"}
    assert (store.dictionary.slots, store.dictionary.free) == (5, 2)
    store.append(named(store, ["G"]))  # the lowest free code: B's
    assert store.dictionary.code("G") == 1
    assert held_names(store) == ["E", "F", "F", "G"]


def test_a_name_evicted_and_stored_again_in_one_batch_keeps_its_code() -> None:
    store = ReadingStore(capacity=2)
    store.append(named(store, ["A", "B"]))
    code = store.dictionary.code("A")
    store.append(named(store, ["A"]))  # evicts the old A while storing a new one
    assert store.dictionary.code("A") == code
    assert held_names(store) == ["B", "A"]


def test_the_names_of_a_batch_larger_than_the_capacity_that_it_skips_are_not_kept() -> None:
    store = ReadingStore(capacity=3)
    store.append(named(store, [f"n{i}" for i in range(1000)]))
    assert in_use(store) == {"n997", "n998", "n999"}


def test_accounting_is_counted_where_readings_come_and_go() -> None:
    # A model written independently: a deque that holds at most `capacity` sequence numbers.
    rng = np.random.default_rng(7)
    capacity = 37
    store = ReadingStore(capacity=capacity)
    model: deque[int] = deque(maxlen=capacity)
    evicted = stored = 0
    for _ in range(300):
        count = int(rng.integers(1, 80))
        before = len(model)
        for _ in range(count):
            model.append(stored)
            stored += 1
        evicted += before + count - len(model)
        store.append(named(store, [f"c{i % 5}" for i in range(count)], first_value=stored - count))
        assert (store.total_ingested, store.buffered, store.evicted) == (stored, len(model), evicted)
        assert store.read(0, stored).values.tolist() == [float(seq) for seq in model]


def test_pinned_names_stay_until_unpinned_then_go_once_unheld() -> None:
    store = ReadingStore(capacity=2)
    store.pin_categories(["G1", "G2"])
    store.append(named(store, ["G1", "X"]))
    store.append(named(store, ["Y", "Z"]))  # evicts G1 and X: G1 is pinned, X goes
    assert in_use(store) == {"G1", "G2", "Y", "Z"}
    store.unpin_categories(["G1", "G2"])
    assert in_use(store) == {"Y", "Z"}


def test_snapshots_of_the_names_keep_naming_what_they_named() -> None:
    store = ReadingStore(capacity=1)
    store.append(named(store, ["old"]))
    snapshot, codes = store.categories, store.read(0, 1).codes
    store.append(named(store, ["new"]))  # "old" is dropped
    store.append(named(store, ["newer"]))  # and "newer" takes its code
    assert store.dictionary.code("newer") == int(codes[0])
    assert store.categories[int(codes[0])] == "newer"
    assert [snapshot[code] for code in codes.tolist()] == ["old"]


def test_the_dictionary_refuses_more_names_in_use_than_codes_whole() -> None:
    dictionary = CategoryDictionary()
    dictionary.encode(f"c{i}" for i in range(MAX_CATEGORIES - 1))
    with pytest.raises(CategoryLimitError, match="65535 categories are in use and this batch adds 2"):
        dictionary.encode(["one", "two", "c1"])
    assert dictionary.in_use == MAX_CATEGORIES - 1
    assert dictionary.code("one") is None


def test_a_stream_names_only_what_it_sends_and_survives_reused_codes() -> None:
    store = ReadingStore(capacity=300)
    store.append(named(store, [f"w{i}" for i in range(300)]))  # 300 codes: past the identity range
    stream = StreamDictionary(store.dictionary)
    first = store.read(0, 300)
    codes, added = stream.translate(first.codes[-2:])
    assert added == ["w298", "w299"]
    assert codes.tolist() == [0, 1]
    store.append(named(store, ["late"] * 249))  # w0..w248 go
    store.append(named(store, ["later"]))  # and w249 with them; "later" takes w0's code
    assert store.dictionary.code("later") == 0
    later = store.read(store.total_ingested - 1, store.total_ingested)
    codes, added = stream.translate(np.concatenate([first.codes[-1:], later.codes]))
    assert added == ["later"]
    assert codes.tolist() == [1, 2]


def test_a_stream_on_store_codes_switches_when_a_code_is_reused_meanwhile() -> None:
    store = ReadingStore(capacity=2)
    store.append(named(store, ["A", "B"]))
    stream = StreamDictionary(store.dictionary)
    codes, added = stream.translate(store.read(0, 2).codes)
    assert (codes.tolist(), added) == ([0, 1], ["A", "B"])
    store.append(named(store, ["C"]))  # A goes
    store.append(named(store, ["D"]))  # B goes; D takes A's code
    held = store.read(0, store.total_ingested)
    assert held.codes.tolist() == [2, 0]
    codes, more = stream.translate(held.codes)
    received = [*added, *more]  # the reader's dictionary: every name the stream added, in order
    assert sorted(more) == ["C", "D"]
    assert [received[code] for code in codes.tolist()] == ["C", "D"]


def test_a_small_clean_dictionary_streams_with_the_store_codes() -> None:
    store = ReadingStore(capacity=10)
    store.append(named(store, ["A", "B"]))
    stream = StreamDictionary(store.dictionary)
    held = store.read(0, 2)
    codes, added = stream.translate(held.codes)
    assert codes is held.codes
    assert added == ["A", "B"]


def test_reused_codes_survive_a_restart(tmp_path: Path) -> None:
    journal = Journal(tmp_path, capacity=3, batch_id_window=10)
    store = ReadingStore(capacity=3)
    store.restore(*_recovered(journal))
    journal.start()
    intake = Intake(store, journal, 10)
    for names in (["A", "B", "C"], ["D", "E"], ["A", "F"]):  # A, B, C, D go; E's code is kept
        committed = intake.append(named(store, names))
        assert committed is not None
        committed.result(timeout=30)
    expected = held_names(store)
    journal.close()

    journal = Journal(tmp_path, capacity=3, batch_id_window=10)
    restored = ReadingStore(capacity=3)
    restored.restore(*_recovered(journal))
    journal.close()
    assert held_names(restored) == expected == ["E", "A", "F"]
    assert in_use(restored) == {"E", "A", "F"}


def _recovered(journal: Journal) -> tuple[list[str], Columns, int]:
    recovered = journal.load()
    return recovered.categories, recovered.columns, recovered.total_ingested


def write_names(stub: pb_grpc.IngestorServiceStub, names: list[str], first_value: int = 0) -> pb.WriteReadingsResponse:
    values = np.arange(first_value, first_value + len(names), dtype="<f8")
    columns = pb.ReadingColumns(
        timestamps_ns=(T0_NS + values.astype("<i8")).tobytes(),
        values=values.tobytes(),
        category_codes=np.arange(len(names), dtype="<u2").tobytes(),
    )
    return stub.WriteReadings(pb.WriteReadingsRequest(columns=columns, column_categories=names), timeout=30)


@pytest.fixture
def small_ingestor(make_ingestor: MakeIngestor) -> ThreadedIngestor:
    return make_ingestor(capacity=20_000)


def test_names_pushed_and_evicted_do_not_reach_later_answers(small_ingestor: ThreadedIngestor) -> None:
    with grpc.insecure_channel(small_ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for push in range(6):  # 60,000 names in all, each carried by one reading
            assert write_names(stub, [f"p{push}-{i}" for i in range(10_000)], push * 10_000).accepted == 10_000
        write_names(stub, ["steady"] * 20_000, 60_000)  # evicts every pushed reading
        assert small_ingestor.running.store.dictionary.in_use == 1
        newest = list(stub.ExportReadings(pb.ExportReadingsRequest(max_readings=1), timeout=10))
        assert [name for message in newest for name in message.new_categories] == ["steady"]
        everything = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=10))
        assert list(everything.categories) == ["steady"]
        assert len(everything) == 20_000


def test_unused_names_of_a_column_dictionary_are_not_kept(small_ingestor: ThreadedIngestor) -> None:
    with grpc.insecure_channel(small_ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        values = np.arange(3, dtype="<f8")
        columns = pb.ReadingColumns(
            timestamps_ns=(T0_NS + values.astype("<i8")).tobytes(),
            values=values.tobytes(),
            category_codes=np.array([5, 5, 9], dtype="<u2").tobytes(),
        )
        request = pb.WriteReadingsRequest(columns=columns, column_categories=[f"d{i}" for i in range(10_000)])
        assert stub.WriteReadings(request, timeout=10).accepted == 3
        exported = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=10))
        assert [exported.categories[code] for code in exported.codes.tolist()] == ["d5", "d5", "d9"]
        assert small_ingestor.running.store.dictionary.in_use == 2


@pytest.fixture
def full_ingestor(make_ingestor: MakeIngestor) -> ThreadedIngestor:
    """65,536 categories in use, each by one held reading."""
    server = make_ingestor(capacity=70_000)
    with grpc.insecure_channel(server.address) as channel:
        names = [f"c{i}" for i in range(MAX_CATEGORIES)]
        assert write_names(pb_grpc.IngestorServiceStub(channel), names).accepted == MAX_CATEGORIES
    return server


def test_a_full_dictionary_refuses_whole_pushes_and_starts_up_front(
    full_ingestor: ThreadedIngestor, make_api_process: MakeProcess
) -> None:
    api = make_api_process(full_ingestor.address)
    with api_http(api, timeout=30) as http:
        push = [
            {"timestamp": "2024-01-20T10:00:00Z", "value": 1.0, "category": "c7"},
            {"timestamp": "2024-01-20T10:00:01Z", "value": 2.0, "category": "brand-new"},
        ]
        response = http.post("/readings", json=push)
        assert response.status_code == 507
        assert "65536 categories are in use" in response.json()["detail"]
        assert http.get("/status").json()["total_ingested"] == MAX_CATEGORIES  # nothing stored

        response = http.post("/start-ingestion", json={"categories": ["fresh"]})
        assert response.status_code == 507
        assert "65536 categories are in use" in response.json()["detail"]
        status = http.get("/status").json()
        assert status["running"] is False
        assert "generator_error" not in status  # refused before it ran: it did not fail

        # Names already in use can still be stored and generated.
        assert http.post("/readings", json=[push[0]]).status_code == 202
        assert http.post("/start-ingestion", json={"categories": ["c1", "c2"]}).status_code == 200
        assert http.get("/status").json()["running"] is True


def test_a_generator_that_stops_by_itself_says_so_in_the_status_and_the_log(
    tmp_path: Path, make_stack: MakeStack
) -> None:
    # No file of the ingestor may grow beyond 1 MB (RLIMIT_FSIZE): generating 200,000 readings a
    # second soon makes a write of the log fail (EFBIG), an I/O error that stops the log for good.
    # (A full disk no longer does: the generator waits for space, tests/ingestor/test_disk_full.py.)
    ingestor, api = make_stack(
        rate_hz=200_000, data_dir=tmp_path / "data", prefix=("prlimit", f"--fsize={1024 * 1024}", "--")
    )
    with api_http(api, timeout=30) as http:
        assert http.post("/start-ingestion").status_code == 200

        def status_once_stopped() -> dict[str, Any] | None:
            status = http.get("/status").json()
            return None if status["running"] else status

        status = wait_until(status_once_stopped, 20, "the generator kept running")
    assert "data directory cannot be written" in status["generator_error"]
    assert status["generator_error"].startswith("the generator stopped: ")
    api.stop()
    ingestor.stop()
    logged = [json.loads(line) for line in ingestor.output if line.startswith("{")]
    stopped = [line for line in logged if line["message"].startswith("the generator stopped by itself")]
    assert len(stopped) == 1
    assert stopped[0]["level"] == "ERROR"
