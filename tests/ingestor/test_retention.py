"""Retention by age: whole blocks evicted once their newest reading is too old, exact accounting, in
memory and in the data directory, and recovery that honours the age."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from pydantic import ValidationError

from devtools.waiting import wait_until
from functions.wire import decode_export
from ingestor.pushdown import aggregate_partials
from ingestor.query import ReadingFilter
from ingestor.settings import IngestorSettings
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor

S = 1_000_000_000
T0 = 1_705_744_800 * S


def batch(store: ReadingStore, first: int, count: int, category: str) -> Columns:
    values = np.arange(first, first + count, dtype=np.float64)
    return Columns(T0 + values.astype(np.int64) * S, values, store.encode_categories([category] * count))


def held_values(store: ReadingStore) -> list[float]:
    return store.read(0, store.total_ingested).values.tolist()


def test_whole_blocks_go_once_their_newest_reading_is_too_old() -> None:
    now = [0]
    store = ReadingStore(100, block_size=4, clock=lambda: now[0])
    store.append(batch(store, 0, 6, "old"))  # block 0 and half of block 1 arrive at 0 s
    now[0] = 10 * S
    store.append(batch(store, 6, 4, "new"))  # block 1 completes, block 2 starts, at 10 s
    store.seal_pending()
    now[0] = 12 * S
    assert store.expire(5 * S) == 4  # block 0 only: block 1's newest reading is 2 s old
    assert held_values(store) == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # two older than 5 s stay with it
    assert (store.buffered, store.evicted, store.total_ingested) == (6, 4, 10)
    assert store.dictionary.code("old") is not None  # readings 4 and 5 still carry it
    assert len(store.blocks) == 1  # block 1's partials; block 0's went with it
    found = aggregate_partials(store, ReadingFilter(), 0)
    assert int(found.from_blocks.count.sum() + found.from_readings.count.sum()) == 6
    now[0] = 16 * S
    assert store.expire(5 * S) == 6  # everything arrived 6 s ago
    assert (store.buffered, store.evicted, store.total_ingested) == (0, 10, 10)
    assert store.dictionary.code("old") is None
    assert store.dictionary.code("new") is None
    assert len(store.blocks) == 0


def test_capacity_and_age_whichever_comes_first() -> None:
    now = [0]
    store = ReadingStore(6, block_size=4, clock=lambda: now[0])
    store.append(batch(store, 0, 5, "A"))
    now[0] = 3 * S
    store.append(batch(store, 5, 3, "A"))  # capacity evicts 0 and 1, in the middle of block 0
    assert (store.oldest_sequence, store.evicted) == (2, 2)
    now[0] = 7 * S
    assert store.expire(5 * S) == 2  # block 0's rest (2, 3); block 1 holds a reading of 3 s
    assert held_values(store) == [4.0, 5.0, 6.0, 7.0]
    assert store.total_ingested == store.buffered + store.evicted == 8
    assert store.expire(5 * S) == 0  # nothing more is due


def test_a_restored_store_keeps_the_arrival_times_it_is_given() -> None:
    now = [100 * S]
    store = ReadingStore(100, block_size=4, clock=lambda: now[0])
    values = np.arange(8, dtype=np.float64)
    columns = Columns(T0 + values.astype(np.int64) * S, values, np.zeros(8, np.uint16))
    store.restore(["A"], columns, 8, arrivals=[(4, 10 * S), (8, 98 * S)])
    assert store.expire(5 * S) == 4
    assert held_values(store) == [4.0, 5.0, 6.0, 7.0]


def test_max_age_setting() -> None:
    assert IngestorSettings(max_age="90s").max_age_ns == 90 * S
    assert IngestorSettings(max_age="24h").max_age_ns == 24 * 3600 * S
    assert IngestorSettings(max_age="").max_age_ns is None
    assert IngestorSettings().max_age_ns is None
    for wrong in ("0s", "1w", "24", "-1h", "1.5h"):
        with pytest.raises(ValidationError, match="max_age"):
            IngestorSettings(max_age=wrong)


def write(stub: pb_grpc.IngestorServiceStub, first: int, count: int) -> None:
    values = np.arange(first, first + count, dtype="<f8")
    stub.WriteReadings(
        pb.WriteReadingsRequest(
            columns=pb.ReadingColumns(
                timestamps_ns=(T0 + values.astype("<i8") * S).tobytes(),
                values=values.tobytes(),
                category_codes=np.zeros(count, dtype="<u2").tobytes(),
            ),
            column_categories=["W"],
        ),
        timeout=5,
    )


@pytest.mark.slow  # seconds by design
def test_the_running_ingestor_expires_by_age_and_deletes_the_rows(tmp_path: Path, make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=1000, data_dir=tmp_path, max_age="1s", block_readings=4)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        write(stub, 0, 10)
        status = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
        assert status.buffered == 10
        wait_until(lambda: stub.GetStatus(pb.GetStatusRequest(), timeout=5).buffered == 0, 10, "the readings to expire")
        status = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
        assert (status.total_ingested, status.evicted) == (10, 10)
    server.close()
    with sqlite3.connect(tmp_path / "readings.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM batches").fetchone() == (0,)


@pytest.mark.slow  # seconds by design
def test_recovery_honours_the_age(tmp_path: Path, make_ingestor: MakeIngestor) -> None:
    first = make_ingestor(capacity=1000, data_dir=tmp_path)
    with grpc.insecure_channel(first.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        write(stub, 0, 8)
        time.sleep(2.5)
        write(stub, 8, 3)
    first.close()
    second = make_ingestor(capacity=1000, data_dir=tmp_path, max_age="2s")
    with grpc.insecure_channel(second.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        status = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
        assert (status.buffered, status.evicted, status.total_ingested) == (3, 8, 11)
        readings = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=5))
        assert readings.values.tolist() == [8.0, 9.0, 10.0]
