"""A disk that does not keep up, for real (a FUSE pass-through whose fsync sleeps): what waits for
it in memory stays bounded, a write that finds no room in time is refused (RESOURCE_EXHAUSTED with
a retry pushback, HTTP 503 with Retry-After) and stores nothing, an acknowledgement still comes only
after the sync, and the generator slows to what the disk sustains and says so."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from devtools.processes import ServerProcess
from devtools.waiting import sample_for, wait_until
from functions.wire import decode_export
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http
from tests.support.factories import MakeStack
from tests.support.slow_disk import set_fsync_delay, slow_disk

pytestmark = pytest.mark.slow

T0 = 1_705_744_800
QUEUE_BYTES = 64 * 1024
"""INGESTOR_JOURNAL_QUEUE_BYTES in these tests: room for 3,640 readings (18 bytes each)."""


def columns(category: str, count: int) -> pb.WriteReadingsRequest:
    values = np.arange(count, dtype="<f8")
    return pb.WriteReadingsRequest(
        columns=pb.ReadingColumns(
            timestamps_ns=(T0 * 1_000_000_000 + np.arange(count)).astype("<i8").tobytes(),
            values=values.tobytes(),
            category_codes=np.zeros(count, dtype="<u2").tobytes(),
        ),
        column_categories=[category],
    )


def queued_bytes(stub: pb_grpc.IngestorServiceStub) -> int:
    """What waits in memory for the disk, as the ingestor reports it."""
    return stub.GetStatus(pb.GetStatusRequest(), timeout=5).journal_queue_bytes


def fill_the_queue(stub: pb_grpc.IngestorServiceStub) -> grpc.Future:
    """Write 3,500 readings (63,000 of the queue's 65,536 bytes: the next batch has to wait for this
    commit) and return that write's future once they wait in the queue for the disk."""
    first = stub.WriteReadings.future(columns("first", 3500), timeout=30)
    wait_until(lambda: queued_bytes(stub) == 3500 * 18, 5, "the first write is not waiting for the disk")
    return first


SlowPair = tuple[ServerProcess, ServerProcess, Path]


@pytest.fixture
def slow_pair(request: pytest.FixtureRequest, make_stack: MakeStack) -> Iterator[SlowPair]:
    """A durable ingestor whose every commit takes ``request.param`` s more once it has started, and
    the API in front of it (1 s deadline)."""
    with slow_disk(fsync_delay_s=0.0) as disk:
        ingestor, api = make_stack(
            api_env={"INGESTOR_TIMEOUT_S": "1"},
            data_dir=disk / "data",
            journal_queue_bytes=QUEUE_BYTES,
            capacity=100_000,
        )
        set_fsync_delay(disk, request.param)
        yield ingestor, api, disk
        # The servers go before their disk does, quickly: syncs take no longer than the disk's own.
        set_fsync_delay(disk, 0.0)
        api.stop()
        ingestor.stop()


FSYNC_DELAY_S = 3.0


@pytest.mark.parametrize("slow_pair", [FSYNC_DELAY_S], indirect=True)
def test_a_write_that_finds_no_room_in_time_is_refused_and_stores_nothing(
    slow_pair: SlowPair,
) -> None:
    # Every commit takes 3 s more: both refusals below come while the first commit still runs.
    ingestor, api, disk = slow_pair
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        started = time.monotonic()
        first = fill_the_queue(stub)
        with pytest.raises(grpc.RpcError) as refused:
            stub.WriteReadings(columns("second", 500), timeout=1.0)
        assert time.monotonic() - started < 1.2 + 0.2  # before its own deadline, not after it
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "the disk does not keep up" in refused.value.details()
        assert ("grpc-retry-pushback-ms", "1000") in tuple(refused.value.trailing_metadata())

        with api_http(api, timeout=30) as http:
            # 200 readings (3,600 bytes) do not fit in the 2,536 left either.
            body = [{"timestamp": "2024-01-20T10:00:00Z", "value": 1.0, "category": "third"}] * 200
            response = http.post("/readings", json=body)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "the disk does not keep up" in response.json()["detail"]

            # The first write is acknowledged only once its (slow) sync is done.
            assert first.result(timeout=30).accepted == 3500
            assert time.monotonic() - started >= FSYNC_DELAY_S
            # Nothing of the refused writes was stored, and a retry once there is room goes through
            # (within the API's 1 s deadline once the disk is quick again).
            set_fsync_delay(disk, 0.0)
            held = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=10))
            assert held.categories == ["first"]
            assert len(held.values) == 3500
            assert http.post("/readings", json=body).status_code == 202


@pytest.mark.parametrize("slow_pair", [0.5], indirect=True)
def test_the_generator_slows_to_what_the_disk_sustains_and_says_so(
    slow_pair: SlowPair,
) -> None:
    ingestor, api, _ = slow_pair
    rate_hz = 50_000.0  # 900 kB/s asked; the disk takes 64 KiB a commit of at least 0.5 s, ~130 kB/s
    with (
        api_http(api, timeout=30) as http,
        grpc.insecure_channel(ingestor.address) as channel,
    ):
        stub = pb_grpc.IngestorServiceStub(channel)
        assert http.post("/start-ingestion", json={"rate_hz": rate_hz}).status_code == 200
        queued = sample_for(lambda: queued_bytes(stub), 5, 0.05)
        status = http.get("/status").json()
        assert http.post("/stop-ingestion").status_code == 200
        total = status["total_ingested"]

    assert status["running"] is True
    assert status["rate_hz"] == rate_hz
    # What the disk sustains, measured by the ingestor: far below the rate asked, and not nothing.
    assert 0 < status["achieved_rate_hz"] < rate_hz / 5
    assert status["generator_held_back"] == "the disk does not keep up: the journal's queue is full"
    # Five seconds at the asked rate would be 250,000 readings; the disk took its commits' worth.
    assert 0 < total < 5 * 2 * QUEUE_BYTES / 18
    # Memory: what waits for the disk never went beyond the bound (and filled it).
    assert QUEUE_BYTES / 2 < max(queued) <= QUEUE_BYTES
    logged = [json.loads(line) for line in ingestor.output if line.startswith("{")]
    held = [line for line in logged if line["message"].startswith("the generator is held back")]
    assert held
    assert held[0]["level"] == "WARNING"


def test_without_pressure_the_status_keeps_its_shape(tmp_path: Path, make_stack: MakeStack) -> None:
    ingestor, api = make_stack(data_dir=tmp_path / "data", rate_hz=1000)
    with api_http(api, timeout=30) as http:
        assert http.post("/start-ingestion").status_code == 200
        time.sleep(1.0)
        status = http.get("/status").json()
        assert http.post("/stop-ingestion").status_code == 200
    assert set(status) == {
        "running",
        "total_ingested",
        "buffered",
        "evicted",
        "capacity",
        "rate_hz",
        "durable",
        "data_dir_bytes",
    }
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        wait_until(  # the last generated batch may still be in its commit
            lambda: stub.GetStatus(pb.GetStatusRequest(), timeout=5).journal_queue_bytes == 0, 5, "bytes still queued"
        )
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).journal_queue_bytes == 0


@pytest.mark.parametrize("slow_pair", [1.0], indirect=True)
def test_a_write_waiting_for_room_is_let_in_once_a_commit_frees_it(
    slow_pair: SlowPair,
) -> None:
    ingestor, _, _ = slow_pair
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        answers: list[pb.WriteReadingsResponse] = []
        first = fill_the_queue(stub)
        waiting = threading.Thread(
            target=lambda: answers.append(stub.WriteReadings(columns("second", 500), timeout=10))
        )
        waiting.start()
        waiting.join(timeout=30)
        assert first.result(timeout=30).accepted == 3500
        assert [answer.accepted for answer in answers] == [500]
        held = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=10))
        assert held.categories == ["first", "second"]
