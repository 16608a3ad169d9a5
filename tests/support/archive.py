"""The archive's tests' helpers: a real S3 API on loopback (moto's server mode), a proxy in front of it
that can hold an upload in flight, and the archive read back as one table.

Every request goes to 127.0.0.1, through boto3, signed with made-up credentials that moto accepts.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from ingestor.archive_files import parse_key

if TYPE_CHECKING:
    import pandas as pd

# boto3, pandas and pyarrow are imported where they are used: collecting the tests that import this
# module (make test-fast collects them all) does not pay for them.

BUCKET = "readings-archive"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on a free loopback port with ``BUCKET`` in it; yields its endpoint URL. The
    credentials go into this process's environment, which ingestor processes inherit."""
    from moto.server import ThreadedMotoServer

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    try:
        # moto keeps its buckets in this process, across servers: every test starts from none.
        httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        client.close()
        yield endpoint
    finally:
        server.stop()


def _frame(files: list[tuple[str, bytes]]) -> pd.DataFrame:
    """The files' readings with the date of the partition each came from, and the schema checked."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = []
    for key, data in files:
        table = pq.read_table(io.BytesIO(data))
        assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
        assert pa.types.is_dictionary(table.schema.field("category").type)
        metadata = pq.ParquetFile(io.BytesIO(data)).metadata
        assert {metadata.row_group(0).column(i).compression for i in range(metadata.num_columns)} == {"ZSTD"}
        frame = table.to_pandas()
        frame["category"] = frame["category"].astype(str)
        frame["partition_date"] = parse_key(key).date  # type: ignore[union-attr]
        frame["key"] = key
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["timestamp", "value", "category", "sequence", "partition_date", "key"])
    return pd.concat(frames, ignore_index=True)


def read_directory_archive(root: Path) -> pd.DataFrame:
    """Every published file under ``root`` (hidden temporary files are not)."""
    files = [(path.relative_to(root).as_posix(), path.read_bytes()) for path in sorted(root.glob("date=*/*.parquet"))]
    assert all(parse_key(key) is not None for key, _ in files)
    return _frame(files)


def read_s3_archive(endpoint: str, prefix: str) -> pd.DataFrame:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    try:
        files = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
            for item in page.get("Contents", ()):
                key = item["Key"][len(prefix) + 1 :]
                assert parse_key(key) is not None, key
                files.append((key, client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()))
        return _frame(files)
    finally:
        client.close()
