"""Durable mode over gRPC: acknowledgement after the sync, recovery on start, idempotent batch ids."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from devtools.processes import ThreadedIngestor
from devtools.waiting import wait_until
from functions.wire import decode_export
from ingestor.journal import Journal
from ingestor.settings import IngestorSettings
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor, MakeProcess

T0 = 1_705_744_800  # 2024-01-20T10:00:00Z


def columns_request(first: int, count: int, category: str = "W", batch_id: str = "") -> pb.WriteReadingsRequest:
    values = np.arange(first, first + count, dtype="<f8")
    return pb.WriteReadingsRequest(
        columns=pb.ReadingColumns(
            timestamps_ns=(T0 * 1_000_000_000 + values.astype("<i8")).tobytes(),
            values=values.tobytes(),
            category_codes=np.zeros(count, dtype="<u2").tobytes(),
        ),
        column_categories=[category],
        batch_id=batch_id,
    )


class Session:
    """A ThreadedIngestor and a stub on it, that can be restarted on the same data directory."""

    def __init__(self, make_ingestor: MakeIngestor, **settings: object) -> None:
        self.make_ingestor = make_ingestor
        self.settings = settings
        self.server: ThreadedIngestor | None = None
        self.channel: grpc.Channel | None = None
        self.start()

    def start(self) -> None:
        self.server = self.make_ingestor(**self.settings)
        self.channel = grpc.insecure_channel(self.server.address)
        self.stub = pb_grpc.IngestorServiceStub(self.channel)

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.server is not None:
            self.server.close()
            self.server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def status(self) -> pb.GetStatusResponse:
        return self.stub.GetStatus(pb.GetStatusRequest(), timeout=5)

    def values(self) -> list[float]:
        readings = decode_export(self.stub.ExportReadings(pb.ExportReadingsRequest(), timeout=10))
        return readings.values.tolist()


@pytest.fixture
def durable(tmp_path: Path, make_ingestor: MakeIngestor) -> Iterator[Session]:
    session = Session(make_ingestor, capacity=1000, data_dir=tmp_path / "data")
    yield session
    session.stop()


@pytest.fixture
def in_memory(make_ingestor: MakeIngestor) -> Iterator[Session]:
    session = Session(make_ingestor, capacity=1000)
    yield session
    session.stop()


def test_status_says_which_mode_runs(durable: Session, in_memory: Session) -> None:
    on_disk = durable.status()
    assert on_disk.durable is True
    assert on_disk.data_dir_bytes > 0
    memory = in_memory.status()
    assert (memory.durable, memory.data_dir_bytes, memory.recovered) == (False, 0, 0)


def test_acknowledged_readings_and_counters_survive_a_restart(durable: Session) -> None:
    first = durable.stub.WriteReadings(columns_request(0, 300), timeout=10)
    assert (first.accepted, first.duplicate, first.durable) == (300, False, True)
    durable.stub.WriteReadings(
        pb.WriteReadingsRequest(readings=[pb.Reading(timestamp={"seconds": T0}, value=300.0, category="M")]),
        timeout=10,
    )
    durable.stub.WriteReadings(columns_request(301, 800), timeout=10)  # 1101 readings: one is evicted

    durable.restart()
    status = durable.status()
    assert (status.total_ingested, status.buffered, status.evicted, status.recovered) == (1101, 1000, 101, 1000)
    assert status.total_ingested == status.buffered + status.evicted
    assert durable.values() == [float(v) for v in range(101, 1101)]
    readings = decode_export(durable.stub.ExportReadings(pb.ExportReadingsRequest(max_readings=1000), timeout=10))
    assert readings.categories == ["W", "M"]


def test_generated_readings_are_persisted_too(durable: Session) -> None:
    durable.stub.StartIngestion(pb.StartIngestionRequest(rate_hz=100), timeout=5)
    wait_until(lambda: durable.status().total_ingested >= 3, 10, "fewer than 3 readings generated")
    durable.stub.StopIngestion(pb.StopIngestionRequest(), timeout=5)
    before = durable.status().total_ingested
    generated = durable.values()
    assert before >= 3

    durable.restart()
    assert durable.status().total_ingested == before
    assert durable.values() == generated


def test_a_retried_batch_id_is_acknowledged_again_without_storing_twice(durable: Session) -> None:
    request = columns_request(0, 50, batch_id="4b2f0f0e-batch-1")
    first = durable.stub.WriteReadings(request, timeout=10)
    retry = durable.stub.WriteReadings(request, timeout=10)
    assert (first.accepted, first.duplicate) == (50, False)
    assert (retry.accepted, retry.duplicate, retry.durable) == (50, True, True)
    assert durable.status().total_ingested == 50
    assert durable.status().remembered_batch_ids == 1

    durable.restart()  # the ids are on disk
    again = durable.stub.WriteReadings(request, timeout=10)
    assert (again.accepted, again.duplicate) == (50, True)
    other = durable.stub.WriteReadings(columns_request(50, 5, batch_id="4b2f0f0e-batch-2"), timeout=10)
    assert (other.accepted, other.duplicate) == (5, False)
    assert durable.values() == [float(v) for v in range(55)]


def test_batch_ids_work_in_memory_too(in_memory: Session) -> None:
    request = columns_request(0, 10, batch_id="only-once")
    assert in_memory.stub.WriteReadings(request, timeout=10).duplicate is False
    retry = in_memory.stub.WriteReadings(request, timeout=10)
    assert (retry.accepted, retry.duplicate, retry.durable) == (10, True, False)
    assert in_memory.status().total_ingested == 10


@pytest.mark.parametrize("batch_id", ["has space", "x" * 129, "tab\tin", "é"])
def test_a_malformed_batch_id_is_invalid_argument(in_memory: Session, batch_id: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        in_memory.stub.WriteReadings(columns_request(0, 1, batch_id=batch_id), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch_id must be 1 to 128 printable ASCII characters" in caught.value.details()
    assert in_memory.status().total_ingested == 0


@pytest.fixture
def held_sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event, list[str]]]:
    """Hold every commit at the sync call until released; record when the sync returns."""
    entered, release = threading.Event(), threading.Event()
    events: list[str] = []
    real_sync = Journal._sync

    def spy(journal: Journal) -> None:
        entered.set()
        release.wait(30)
        real_sync(journal)
        events.append("sync returned")

    monkeypatch.setattr(Journal, "_sync", spy)
    yield entered, release, events
    release.set()


def test_the_acknowledgement_is_sent_only_after_the_sync_returns(
    durable: Session, held_sync: tuple[threading.Event, threading.Event, list[str]]
) -> None:
    entered, release, events = held_sync
    call = durable.stub.WriteReadings.future(columns_request(0, 100, batch_id="held"), timeout=30)
    retry = durable.stub.WriteReadings.future(columns_request(0, 100, batch_id="held"), timeout=30)
    assert entered.wait(10)
    # The commit is in flight and its sync has not returned: no answer may reach the producer, and
    # the server keeps serving other calls meanwhile.
    assert durable.status().total_ingested == 100
    time.sleep(0.3)
    assert not call.done()
    assert not retry.done()
    assert events == []
    release.set()
    responses = [call.result(timeout=10), retry.result(timeout=10)]
    events.append("acknowledged")
    assert events == ["sync returned", "acknowledged"]
    # Two attempts with one batch id, the second arriving while the first was being committed: both
    # are acknowledged by the same commit, and the readings are stored once.
    assert sorted((r.accepted, r.duplicate, r.durable) for r in responses) == [(100, False, True), (100, True, True)]
    assert durable.status().total_ingested == 100


def test_a_failed_commit_is_unavailable_not_an_acknowledgement(
    durable: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable.stub.WriteReadings(columns_request(0, 5), timeout=10)

    def failing_sync(journal: Journal) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(Journal, "_sync", failing_sync)
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as caught:
            durable.stub.WriteReadings(columns_request(5, 5, batch_id="lost"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "data directory cannot be written" in caught.value.details()
    monkeypatch.undo()
    durable.restart()
    assert durable.values() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_an_empty_data_dir_means_memory_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INGESTOR_DATA_DIR", "")
    assert IngestorSettings().data_dir is None
    monkeypatch.setenv("INGESTOR_DATA_DIR", str(tmp_path))
    assert IngestorSettings().data_dir == tmp_path


def test_a_second_ingestor_on_the_same_directory_refuses_to_start(
    tmp_path: Path, make_ingestor_process: MakeProcess
) -> None:
    make_ingestor_process(data_dir=tmp_path)
    with pytest.raises(RuntimeError, match="exited with 1") as caught:
        make_ingestor_process(data_dir=tmp_path)
    assert "cannot start:" in str(caught.value)
    assert "in use by another ingestor" in str(caught.value)
    assert "Traceback" not in str(caught.value)
