"""Where archive files go, and how each becomes visible whole: a local directory or S3.

Both write a file under a temporary name first and make it visible in one step: a local file is
written hidden (``.…inprogress``, which Hive-style readers skip) next to its final place, fsync'd and
renamed; an S3 object is written to a local spool file, then sent with one PUT, or as a multipart
upload that S3 shows only once completed (boto3's managed transfer). A crash leaves at most a hidden
file or an unfinished upload behind, never a partial object under a final name. S3 is reached
through boto3 with its default credential chain (the task role on ECS), at another endpoint when
one is given (an S3-compatible store).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

MULTIPART_THRESHOLD = 64 * 1024 * 1024
"""Files larger than this go up as multipart uploads (parts of this size), smaller ones in one PUT."""


class ArchiveTarget(Protocol):
    url: str

    def local_path(self, stream: str, start_seq: int, date: str) -> Path:
        """Where the file of ``date`` of the segment starting at ``start_seq`` is written before it is published."""

    def publish(self, local: Path, key: str) -> None:
        """Make ``local`` visible whole under ``key`` (relative to the archive's root), and remove it."""

    def file_names(self) -> Iterator[str]:
        """The names of the files the archive holds, relative to its root."""

    def clean(self, stream: str) -> None:
        """Remove what an earlier run of ``stream`` left unpublished (its temporary files)."""

    def close(self) -> None: ...


class DirectoryTarget:
    """``file:///path``: files in a local (or mounted) directory."""

    def __init__(self, root: Path) -> None:
        self.url = root.as_uri()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def local_path(self, stream: str, start_seq: int, date: str) -> Path:
        return self.root / f"date={date}" / f".{stream}-{start_seq:020d}.inprogress"

    def publish(self, local: Path, key: str) -> None:
        final = self.root / key
        os.replace(local, final)
        directory = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def file_names(self) -> Iterator[str]:
        for path in self.root.glob("date=*/*.parquet"):
            yield path.relative_to(self.root).as_posix()

    def clean(self, stream: str) -> None:
        for path in self.root.glob(f"date=*/.{stream}-*.inprogress"):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        pass


class S3Target:
    """``s3://bucket/prefix``: objects in a bucket, through boto3."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, spool_dir: Path | None) -> None:
        import boto3
        from botocore.config import Config

        self._bucket = bucket
        self._prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self._prefix}".rstrip("/")
        # Failures come back within seconds; the archiver tries again on its own schedule.
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
        self._client: Any = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        self._own_spool = spool_dir is None
        self._spool = Path(tempfile.mkdtemp(prefix="ingestor-archive-")) if spool_dir is None else spool_dir
        self._spool.mkdir(mode=0o700, parents=True, exist_ok=True)

    def local_path(self, stream: str, start_seq: int, date: str) -> Path:
        return self._spool / f"{stream}-{start_seq:020d}-{date}.parquet"

    def publish(self, local: Path, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD)
        self._client.upload_file(str(local), self._bucket, self._prefix + key, Config=transfer)
        local.unlink()

    def file_names(self) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"][len(self._prefix) :]

    def clean(self, stream: str) -> None:
        for path in self._spool.glob(f"{stream}-*.parquet"):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        self._client.close()
        if self._own_spool:
            shutil.rmtree(self._spool, ignore_errors=True)


def open_target(url: str, endpoint_url: str | None = None, spool_dir: Path | None = None) -> ArchiveTarget:
    """The target an ``INGESTOR_ARCHIVE_URL`` names; S3 spools files in ``spool_dir`` (a temporary
    directory when None) before it sends them."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return DirectoryTarget(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return S3Target(parts.netloc, unquote(parts.path), endpoint_url, spool_dir)
    raise ValueError(f"an archive URL is s3://bucket/prefix or file:///path, not {url!r}")
