"""The ingestor's configuration, read from ``INGESTOR_*`` environment variables."""

from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ingestor.categories import check_category


class IngestorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INGESTOR_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    """Where to listen. Loopback by default; a container sets 0.0.0.0 explicitly."""
    port: int = Field(50051, ge=0, le=65535)
    """0 picks a free port; the chosen one is logged."""
    capacity: int = Field(1_000_000, ge=1, le=1_000_000_000)
    """How many readings the ring buffer holds before it evicts the oldest."""
    rate_hz: float = Field(1.0, gt=0, le=1_000_000)
    """Readings generated per second while ingestion runs."""
    categories: Annotated[tuple[str, ...], NoDecode] = ("A", "B", "C")
    """Categories the generator draws from; a comma-separated list in the environment."""
    watch_buffer: int = Field(65_536, ge=1, le=10_000_000)
    """Readings queued for each WatchReadings subscriber; a slower one misses the rest, counted."""
    watch_buffer_bytes: int = Field(1024 * 1024, ge=4096, le=2**31 - 1)
    """Bytes queued for each WatchReadings subscriber at most (17 or 18 a reading), with watch_buffer."""
    watch_stall_s: float = Field(10.0, gt=0, le=3600)
    """A subscriber whose readings waited this long, or that took none for this long, is dropped."""
    max_subscribers: int = Field(256, ge=1, le=100_000)
    """Live WatchReadings subscribers at most; one more is RESOURCE_EXHAUSTED."""
    max_concurrent_exports: int = Field(4, ge=1, le=10_000)
    """ExportReadings calls that run at once, apart from those that fit one message; the others wait
    their turn (first come, first served) within their deadline, holding no readings meanwhile."""
    shutdown_grace_s: float = Field(3.0, ge=0)
    """How long in-flight calls may take to finish after SIGTERM."""
    block_partials: bool = True
    """Keep partial aggregates of each sealed block, so that AggregateReadings reads only the
    readings of the blocks it cannot answer from them (false: it reads every one)."""
    block_readings: int = Field(65_536, ge=1, le=1 << 24)
    """Readings a block holds: the unit of sealed partials and of eviction by age."""
    max_age: str | None = Field(None, pattern=r"^[1-9][0-9]{0,8}(s|m|h|d)$")
    """Readings that arrived longer ago than this (``90s``, ``15m``, ``24h``, ``7d``) are evicted, a
    block at a time; unset (or empty): by capacity only."""
    data_dir: Path | None = None
    """Durable mode when set: every batch is fsync'd here before it is acknowledged, and the buffer
    is rebuilt from it on start. Unset (or empty): memory only."""
    batch_id_window: int = Field(100_000, ge=1, le=10_000_000)
    """How many of the newest batch ids are remembered, so that retries are not stored twice."""
    journal_queue_bytes: int = Field(16 * 1024 * 1024, ge=64 * 1024, le=2**31 - 1)
    """Durable mode: bytes of batches (18 a reading) that may wait for the disk in memory. Beyond,
    writes wait for room until their deadline (then RESOURCE_EXHAUSTED) and the generator slows down."""

    archive_url: str | None = Field(None, pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.*)$")
    """Where readings are archived as Parquet (``ingestor/archiver.py``): ``s3://bucket/prefix`` or
    ``file:///path``. Unset or empty: no archive."""
    archive_endpoint_url: str | None = None
    """Another S3 endpoint than AWS's (an S3-compatible store); credentials come from boto3's default chain."""
    archive_spool_dir: Path | None = None
    """Where S3 archive files are written before they are sent: by default ``archive-spool`` in
    the data directory, or a temporary directory without one."""
    archive_interval_s: float = Field(300.0, gt=0, le=86_400)
    """A file is published at least this often while readings arrive (and when it holds archive_file_readings)."""
    archive_file_readings: int = Field(16_777_216, ge=1, le=1_000_000_000)
    """Readings a file holds at most (about 1.7 B each for generated data: 29 MB)."""

    rollups: bool = True
    """Keep per (category, minute) partial aggregates of every reading after it is evicted (GetHistory)."""
    rollup_retention: str = Field("30d", pattern=r"^[1-9][0-9]{0,5}(m|h|d)$")
    """How long rollups are kept, in event time behind the newest event time seen."""

    @property
    def rollup_retention_ns(self) -> int:
        unit = {"m": 60, "h": 3600, "d": 86_400}[self.rollup_retention[-1]]
        return int(self.rollup_retention[:-1]) * unit * 1_000_000_000

    @field_validator("data_dir", "archive_url", "archive_endpoint_url", "archive_spool_dir", "max_age", mode="before")
    @classmethod
    def _empty_data_dir_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def max_age_ns(self) -> int | None:
        if self.max_age is None:
            return None
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[self.max_age[-1]]
        return int(self.max_age[:-1]) * unit * 1_000_000_000

    token: SecretStr | None = None
    """When set, IngestorService calls need ``authorization: Bearer <token>`` (health and reflection do not)."""
    tls_cert_file: FilePath | None = None
    """PEM certificate chain: with ``tls_key_file``, the server speaks TLS only."""
    tls_key_file: FilePath | None = None
    """PEM private key of ``tls_cert_file``."""
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=2**31 - 1)
    """The largest request accepted; a larger one is RESOURCE_EXHAUSTED. A push of 10,000 readings
    (the function's largest) takes at most 960,131 bytes as messages (96 a reading: a 64-character
    category, a pre-1970 timestamp with nanos, a value; plus a 128-character batch id) and 840,147
    as columns (18 bytes a reading and 66 a distinct 64-character name, 10,000 of them), so 4 MiB
    leaves four times that; the benchmark's 65,536-reading columnar chunks take 1.2 MB."""
    log_level: str = Field("INFO", pattern=r"(?i)^(debug|info|warning|error)$")
    """DEBUG also logs every successful call."""
    metrics_port: int | None = Field(9464, ge=0, le=65535)
    """Prometheus metrics at http://host:port/metrics, on ``host``; 0 picks a free port (logged),
    empty turns them off."""
    metrics_emf: bool = False
    """Also write the key metrics to stdout as CloudWatch Embedded Metric Format lines."""
    metrics_emf_interval_s: float = Field(60.0, gt=0, le=3600)
    """How often the EMF lines are written."""
    metrics_namespace: str = Field("RealtimePipeline", min_length=1, max_length=255, pattern=r"^[^:].*$")
    """The CloudWatch namespace of the EMF lines."""

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_metrics_port_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check_tls_pair(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self

    def tls_files(self) -> tuple[Path, Path] | None:
        """(certificate, key) when the server must speak TLS."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return self.tls_cert_file, self.tls_key_file

    @field_validator("categories", mode="before")
    @classmethod
    def _split_categories(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value

    @field_validator("categories")
    @classmethod
    def _check_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one category is needed")
        for name in value:
            check_category(name)
        if len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        return value
