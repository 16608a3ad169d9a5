"""The ingestor's Prometheus metrics: the same counts GetStatus answers, exactly, at a quiet moment."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import grpc
import pytest

from devtools.processes import LOCALHOST, ThreadedIngestor
from devtools.waiting import wait_until
from ingestor.errors import PortUnavailable
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor
from tests.support.scrape import Samples, scrape, total, value


def metrics_of(ingestor: ThreadedIngestor) -> Samples:
    endpoint = ingestor.running.metrics_endpoint
    assert endpoint is not None
    return scrape(f"http://{LOCALHOST}:{endpoint.port}/metrics")


def reading(seconds: int, category: str = "A", value: float = 1.0) -> pb.Reading:
    return pb.Reading(timestamp={"seconds": seconds}, value=value, category=category)


def test_counters_agree_exactly_with_get_status(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=50, rate_hz=2000, categories=("A", "B"), metrics_port=0)
    future = int(time.time()) + 3600
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        stub.StartIngestion(pb.StartIngestionRequest())
        wait_until(lambda: stub.GetStatus(pb.GetStatusRequest()).total_ingested > 120, 10, "too few readings")
        stub.StopIngestion(pb.StopIngestionRequest())
        batch = [reading(future, "A"), reading(future - 1, "B"), reading(future, "C")]
        stub.WriteReadings(pb.WriteReadingsRequest(batch_id="b-1", readings=batch))
        assert stub.WriteReadings(pb.WriteReadingsRequest(batch_id="b-1", readings=batch)).duplicate
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(1, "B")]))  # long before the others: late
        with pytest.raises(grpc.RpcError) as refused:
            stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(future, "A", math.nan), reading(future)]))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        status = stub.GetStatus(pb.GetStatusRequest())
        samples = metrics_of(ingestor)

    assert status.late >= 2  # B at future - 1, and B at 1 s
    written = value(samples, "ingestor_readings_ingested_total", source="write")
    generated = value(samples, "ingestor_readings_ingested_total", source="generator")
    assert written == 4
    assert value(samples, "ingestor_readings_ingested_total", source="restored") == 0
    assert generated + written == status.total_ingested
    assert value(samples, "ingestor_readings_evicted_total") == status.evicted > 0
    assert value(samples, "ingestor_readings_late_total") == status.late
    late_by_category = {
        dict(labels)["category"]: count
        for (name, labels), count in samples.items()
        if name == "ingestor_category_readings_late_total"
    }
    assert late_by_category == dict(status.late_by_category)
    assert value(samples, "ingestor_write_duplicates_total") == 1
    assert value(samples, "ingestor_readings_rejected_total", reason="invalid_argument") == 2
    assert value(samples, "ingestor_buffer_readings") == status.buffered == 50
    assert value(samples, "ingestor_buffer_capacity_readings") == 50
    assert value(samples, "ingestor_newest_event_time_seconds") == future
    assert time.time() - value(samples, "ingestor_last_arrival_time_seconds") < 60
    assert value(samples, "ingestor_generator_running") == 0
    assert value(samples, "ingestor_generator_rate_per_second") == 2000
    # Calls by method and status code: the request counter and the histogram's count agree.
    for code, calls in (("OK", 3), ("INVALID_ARGUMENT", 1)):
        assert value(samples, "ingestor_rpc_requests_total", method="WriteReadings", code=code) == calls
        assert value(samples, "ingestor_rpc_duration_seconds_count", method="WriteReadings", code=code) == calls
    assert value(samples, "ingestor_rpc_requests_total", method="StartIngestion", code="OK") == 1
    build = [labels for (name, labels), _ in samples.items() if name == "ingestor_build_info"]
    assert len(build) == 1
    assert dict(build[0])["python"]
    assert value(samples, "process_resident_memory_bytes") > 0


def test_category_labels_stop_past_64_names(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=1000, metrics_port=0)
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(100, f"c{i}") for i in range(64)]))
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(1, "c0")]))
        small = metrics_of(ingestor)
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(1, "c64")]))
        large = metrics_of(ingestor)
    assert value(small, "ingestor_category_readings_late_total", category="c0") == 1
    assert not [name for name, _ in large if name == "ingestor_category_readings_late_total"]
    assert value(large, "ingestor_readings_late_total") == 2


def test_restored_readings_and_journal_commits(tmp_path: Path, make_ingestor: MakeIngestor) -> None:
    first = make_ingestor(capacity=100, data_dir=tmp_path, metrics_port=0)
    with grpc.insecure_channel(first.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for start in (0, 10):
            stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(start + i) for i in range(5)]))
    samples = metrics_of(first)
    assert value(samples, "ingestor_journal_commit_duration_seconds_count") == 2
    assert value(samples, "ingestor_journal_batches_per_commit_sum") == 2
    assert value(samples, "ingestor_data_dir_bytes") > 0
    first.close()

    second = make_ingestor(capacity=100, data_dir=tmp_path, metrics_port=0)
    with grpc.insecure_channel(second.address) as channel:
        status = pb_grpc.IngestorServiceStub(channel).GetStatus(pb.GetStatusRequest())
    samples = metrics_of(second)
    assert value(samples, "ingestor_readings_ingested_total", source="restored") == status.total_ingested == 10
    assert total(samples, "ingestor_readings_ingested_total") == 10


def test_subscribers_and_what_they_missed(make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=1000, metrics_port=0, watch_buffer=1)
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        stream = stub.WatchReadings(pb.WatchReadingsRequest())
        stream.initial_metadata()  # subscribed
        assert value(metrics_of(ingestor), "ingestor_watch_subscribers") == 1
        # One batch of 100 offered at once to a queue of one reading: 99 missed.
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(i) for i in range(100)]))
        assert value(metrics_of(ingestor), "ingestor_watch_missed_readings_total") == 99
        stream.cancel()
        wait_until(
            lambda: value(metrics_of(ingestor), "ingestor_watch_subscribers") == 0, 5, "the subscriber is still counted"
        )


def test_a_taken_metrics_port_stops_the_start(make_ingestor: MakeIngestor) -> None:
    with socket.socket() as taken:
        taken.bind((LOCALHOST, 0))
        taken.listen()
        with pytest.raises(PortUnavailable, match="cannot serve metrics"):
            make_ingestor(metrics_port=taken.getsockname()[1])
