"""AggregateReadings over gRPC: blocks sealed off the write path, pruned by event time, one snapshot."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from devtools.waiting import wait_until
from functions.wire import decode_partials
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor

S = 1_000_000_000
T0 = 1_705_744_800 * S


def write(stub: pb_grpc.IngestorServiceStub, seconds: np.ndarray, values: np.ndarray, codes: np.ndarray) -> None:
    stub.WriteReadings(
        pb.WriteReadingsRequest(
            columns=pb.ReadingColumns(
                timestamps_ns=(T0 + seconds.astype("<i8") * S).tobytes(),
                values=values.astype("<f8").tobytes(),
                category_codes=codes.astype("<u2").tobytes(),
            ),
            column_categories=["A", "B"],
        ),
        timeout=5,
    )


def aggregate(stub: pb_grpc.IngestorServiceStub, **fields: object) -> pb.AggregateReadingsResponse:
    response: pb.AggregateReadingsResponse = stub.AggregateReadings(pb.AggregateReadingsRequest(**fields), timeout=5)
    return response


def test_sealed_blocks_answer_and_blocks_outside_the_filter_are_skipped(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=1000, block_readings=10)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        seconds = np.arange(55)  # blocks of 10 readings, 10 s each; 5 in the open block
        write(stub, seconds, seconds * 1.5, seconds % 2)
        wait_until(lambda: stub.GetStatus(pb.GetStatusRequest(), timeout=5).sealed_blocks == 5, 10, "5 sealed blocks")
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).partial_bytes > 0
        whole = aggregate(stub)
        assert (whole.blocks_used, whole.readings_read) == (5, 5)  # the open block is read
        rows = decode_partials(whole)
        merged = rows.groupby("category")[["count", "total"]].sum()
        assert merged["count"].to_dict() == {"A": 28, "B": 27}
        assert merged["total"].to_dict() == {"A": 1.5 * sum(range(0, 55, 2)), "B": 1.5 * sum(range(1, 55, 2))}
        # since in the middle of block 2: blocks 0 and 1 skipped, 2 read, 3 and 4 from partials.
        since = pb.AggregateReadingsRequest()
        since.since.FromNanoseconds(T0 + 25 * S)
        recent = aggregate(stub, since=since.since, categories=["B"], bucket_seconds=60)
        assert (recent.blocks_used, recent.readings_read) == (2, 15)
        rows = decode_partials(recent)
        assert int(rows["count"].sum()) == len(range(25, 55)) // 2
        assert set(rows["category"]) == {"B"}
        assert set(rows["key"]) == {(T0 // S + 25) // 60, (T0 // S + 54) // 60}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"bucket_seconds": 86_401}, "bucket_seconds must be at most 86400"),
        ({"categories": ["bad name"]}, "categories"),
    ],
)
def test_bad_requests_are_invalid_arguments(
    stub: pb_grpc.IngestorServiceStub, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        aggregate(stub, **fields)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (error.value.details() or "")


def test_since_after_until_is_an_invalid_argument(stub: pb_grpc.IngestorServiceStub) -> None:
    request = pb.AggregateReadingsRequest()
    request.since.FromNanoseconds(T0 + S)
    request.until.FromNanoseconds(T0)
    with pytest.raises(grpc.RpcError) as error:
        stub.AggregateReadings(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.slow  # seconds by design
def test_each_answer_is_one_snapshot_while_writes_go_on(make_ingestor: MakeIngestor) -> None:
    """Batches of 7 readings of value 1 into blocks of 4: a snapshot holds whole batches only."""
    server = make_ingestor(capacity=1_000_000, block_readings=4)
    stop = threading.Event()

    def writer() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            second = 0
            while not stop.is_set():
                write(stub, np.arange(second, second + 7), np.ones(7), np.zeros(7))
                second += 7

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            counts = []
            for _ in range(200):
                rows = decode_partials(aggregate(stub, bucket_seconds=1))
                count = int(rows["count"].sum())
                assert count % 7 == 0
                assert float(rows["total"].sum()) == count
                counts.append(count)
    finally:
        stop.set()
        thread.join()
    assert counts == sorted(counts)
    assert counts[-1] > counts[0]


@pytest.mark.slow  # seconds by design
def test_a_steady_generator_has_its_blocks_sealed(make_ingestor: MakeIngestor) -> None:
    """The generator writes every 10 ms, never pausing long enough for the sealer to call it quiet:
    blocks are sealed all the same, a second or so after they fill up, without any query."""
    server = make_ingestor(capacity=1000, block_readings=64, rate_hz=2000)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        stub.StartIngestion(pb.StartIngestionRequest(), timeout=5)
        wait_until(lambda: stub.GetStatus(pb.GetStatusRequest(), timeout=5).sealed_blocks >= 3, 10, "sealed blocks")
        stub.StopIngestion(pb.StopIngestionRequest(), timeout=5)
