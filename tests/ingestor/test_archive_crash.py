"""kill -9 while an archive file is being uploaded to S3 (moto on loopback, through boto3), then a
restart on the same data directory: the archive still holds every reading exactly once."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devtools.waiting import wait_until
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.ingestor.test_archive import check_exactly_once, status, write
from tests.support.archive import BUCKET, moto_s3, read_s3_archive
from tests.support.factories import MakeProcess
from tests.support.proxies import HoldingProxy

PREFIX = "crash"


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_s3(monkeypatch) as endpoint:
        yield endpoint


@pytest.mark.parametrize(
    "uploads_before",
    [
        pytest.param(0, id="nothing-visible"),
        # The segment spans midnight: its first date's file is visible, the second one's is in flight.
        pytest.param(1, id="one-of-two-dates-visible"),
    ],
)
def test_kill_9_during_an_upload_then_restart_archives_each_reading_once(
    make_ingestor_process: MakeProcess, s3_endpoint: str, tmp_path: Path, uploads_before: int
) -> None:
    proxy = HoldingProxy(s3_endpoint.removeprefix("http://"), f"PUT /{BUCKET}/{PREFIX}/".encode(), uploads_before)
    settings = {
        "capacity": 5000,
        "data_dir": tmp_path / "data",
        "archive_url": f"s3://{BUCKET}/{PREFIX}",
        "archive_interval_s": 0.2,
    }
    try:
        first = make_ingestor_process(**settings, archive_endpoint_url=proxy.endpoint)
        with grpc.insecure_channel(first.address) as channel:
            write(pb_grpc.IngestorServiceStub(channel), 0, 3000)  # readings 1,500 on are after midnight
            assert proxy.holding.wait(20), "no upload was held"
        first.stop(signal.SIGKILL)
    finally:
        proxy.close()
    visible = read_s3_archive(s3_endpoint, PREFIX)
    assert len(visible) == 1500 * uploads_before

    second = make_ingestor_process(**settings, archive_endpoint_url=s3_endpoint)
    with grpc.insecure_channel(second.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for batch in range(3):  # 6,000 more: the first 4,000 are evicted
            write(stub, 3000 + batch * 2000, 2000)
            wait_until(lambda: status(stub).archive_pending == 0, 30, "the archive did not catch up")
        current = status(stub)
    assert (current.total_ingested, current.evicted, current.evicted_unarchived) == (9000, 4000, 0)
    archive = read_s3_archive(s3_endpoint, PREFIX)
    check_exactly_once(archive, set(range(4000, 9000)), 9000)
    assert len(archive) == 9000
