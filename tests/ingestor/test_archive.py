"""The archive: readings written as Parquet to file:// and to S3 (moto's server on loopback, through
boto3), before the buffer evicts them, each exactly once; and what happens while S3 cannot be reached."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from devtools.processes import ThreadedIngestor
from devtools.waiting import wait_until
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.archive import BUCKET, moto_s3, read_directory_archive, read_s3_archive
from tests.support.factories import MakeIngestor

MIDNIGHT_NS = 1_705_795_200 * 1_000_000_000  # 2024-01-21T00:00:00Z
STEP_NS = 100_000_000
FIRST_NS = MIDNIGHT_NS - 150 * 1_000_000_000
"""Reading k has the value k and the event time FIRST_NS + k * STEP_NS: the 1,500th is at midnight."""
CATEGORIES = ("north", "south", "east")

# Each waits for files to be published, several times: seconds by design.
pytestmark = pytest.mark.slow


def write(stub: pb_grpc.IngestorServiceStub, first: int, count: int) -> None:
    keys = np.arange(first, first + count)
    stub.WriteReadings(
        pb.WriteReadingsRequest(
            columns=pb.ReadingColumns(
                timestamps_ns=(FIRST_NS + keys * STEP_NS).astype("<i8").tobytes(),
                values=keys.astype("<f8").tobytes(),
                category_codes=(keys % len(CATEGORIES)).astype("<u2").tobytes(),
            ),
            column_categories=CATEGORIES,
        )
    )


def status(stub: pb_grpc.IngestorServiceStub) -> pb.GetStatusResponse:
    return stub.GetStatus(pb.GetStatusRequest())


def held_sequences(server: ThreadedIngestor) -> set[int]:
    async def read() -> set[int]:
        store = server.running.store
        return set(range(store.oldest_sequence, store.total_ingested))

    return server.call(read())


def check_exactly_once(archive: pd.DataFrame, held: set[int], total: int) -> None:
    """Each reading is archived at most once, archive and buffer together hold them all, and each
    archived reading is the one written under its number, in the partition of its event date."""
    sequences = archive["sequence"].to_numpy()
    assert len(sequences) == len(set(sequences.tolist())), "a reading is archived twice"
    assert set(sequences.tolist()) | held == set(range(total))
    np.testing.assert_array_equal(archive["value"].to_numpy(), sequences.astype(float))
    expected_ns = FIRST_NS + sequences * STEP_NS
    np.testing.assert_array_equal(archive["timestamp"].dt.tz_convert(None).to_numpy().astype(np.int64), expected_ns)
    assert archive["category"].tolist() == [CATEGORIES[k % 3] for k in sequences.tolist()]
    dates = pd.to_datetime(expected_ns, utc=True).strftime("%Y-%m-%d")
    assert archive["partition_date"].tolist() == list(dates)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_s3(monkeypatch) as endpoint:
        yield endpoint


def run_past_capacity(stub: pb_grpc.IngestorServiceStub, batches: int = 6, size: int = 500) -> int:
    """Write ``batches`` batches (three times the capacity of 1,000), each once the archive has
    copied the one before: nothing is evicted unarchived. Returns how many readings were written."""
    for batch in range(batches):
        write(stub, batch * size, size)
        wait_until(lambda: status(stub).archive_pending == 0, 20, "the archive did not catch up")
    return batches * size


def test_file_archive_holds_every_evicted_reading_once_in_date_partitions(
    make_ingestor: MakeIngestor, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    server = make_ingestor(capacity=1000, archive_url=root.as_uri(), archive_interval_s=0.2)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        total = run_past_capacity(stub)
        current = status(stub)
        assert current.archiving
        assert (current.archived, current.evicted_unarchived, current.evicted) == (total, 0, total - 1000)
        archive = read_directory_archive(root)
    check_exactly_once(archive, held_sequences(server), total)
    assert len(archive) == total  # published files hold the buffered readings too
    assert set(archive["partition_date"]) == {"2024-01-20", "2024-01-21"}
    assert not list(root.glob("date=*/.*")), "temporary files are left"


def test_s3_archive_through_boto3_holds_every_reading_once(make_ingestor: MakeIngestor, s3_endpoint: str) -> None:
    server = make_ingestor(
        capacity=1000,
        archive_url=f"s3://{BUCKET}/readings/v1",
        archive_endpoint_url=s3_endpoint,
        archive_interval_s=0.2,
    )
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        total = run_past_capacity(stub)
        assert status(stub).evicted_unarchived == 0
    archive = read_s3_archive(s3_endpoint, "readings/v1")
    check_exactly_once(archive, held_sequences(server), total)
    assert len(archive) == total


def test_while_s3_is_unreachable_evicted_readings_are_counted_and_logged(
    make_ingestor: MakeIngestor, s3_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Chosen rule: the ingestor never waits for the archive; what the buffer evicts before it was
    archived is counted in the status and logged."""
    with socket.socket() as probe:  # a port nobody listens on: one the OS just gave back
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="ingestor.archiver")
    server = make_ingestor(
        capacity=1000,
        archive_url=f"s3://{BUCKET}/readings",
        archive_endpoint_url=f"http://127.0.0.1:{dead_port}",
        archive_interval_s=0.1,
        archive_file_readings=300,
    )
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for batch in range(10):
            write(stub, batch * 500, 500)
            wait_until(lambda: status(stub).archive_error != "", 20, "publishing did not fail")

        def logged() -> bool:
            return any("were evicted before they were archived" in record.getMessage() for record in caplog.records)

        wait_until(logged, 10, "no line says that readings were evicted before they were archived")
        current = status(stub)
    assert (current.archived, current.evicted) == (0, 4000)
    assert "cannot publish to s3://readings-archive/readings" in current.archive_error
    # Copying stopped once two closed files waited: the rest was evicted before it was copied. What
    # was copied waits to be published; nothing is both, nothing is neither.
    assert 0 < current.evicted_unarchived <= current.evicted
    assert current.evicted_unarchived + current.archive_pending == 5000
    assert read_s3_archive(s3_endpoint, "readings").empty
