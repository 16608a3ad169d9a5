"""The function's configuration, read from the environment."""

from functools import lru_cache
from typing import Annotated

from pydantic import Field, FilePath, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from functions.paging import signing_key


class FunctionSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    ingestor_address: str = "127.0.0.1:50051"
    """host:port of the ingestor's gRPC server (INGESTOR_ADDRESS)."""
    ingestor_timeout_s: float = Field(5.0, gt=0, le=300)
    """Deadline of every call to the ingestor (INGESTOR_TIMEOUT_S)."""
    ingestor_connect_timeout_s: float = Field(1.0, gt=0, le=60)
    """How long to wait for a connection before answering 503 (INGESTOR_CONNECT_TIMEOUT_S)."""
    ingestor_keepalive_s: float = Field(20.0, ge=1, le=3600)
    """gRPC keepalive ping interval; a channel without calls for longer is replaced by a fresh
    connection before the next call, as after a Lambda thaw (INGESTOR_KEEPALIVE_S)."""
    ingestor_token: SecretStr | None = None
    """Sent to the ingestor as ``authorization: Bearer <token>`` (INGESTOR_TOKEN)."""
    ingestor_tls: bool = False
    """Speak TLS to the ingestor, trusting the system's CAs (INGESTOR_TLS)."""
    ingestor_ca_file: FilePath | None = None
    """Speak TLS to the ingestor, trusting the CA certificates in this PEM file (INGESTOR_CA_FILE)."""
    api_token: SecretStr | None = None
    """When set, state-changing requests need ``Authorization: Bearer <token>`` (API_TOKEN)."""
    api_token_for_reads: bool = False
    """With API_TOKEN, reads need the token too, all but /health (API_TOKEN_FOR_READS)."""
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """Origins allowed to call from a browser, comma-separated; none by default (CORS_ORIGINS)."""
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=0)
    """Request bodies beyond this are refused with 413 (MAX_BODY_BYTES)."""
    log_level: str = Field("INFO", pattern=r"(?i)^(debug|info|warning|error)$")
    """INFO logs one JSON line a request (LOG_LEVEL)."""
    stream_max_clients: int = Field(100, ge=1, le=100_000)
    """Event streams (/stream) open at once per process at most; one more is a 503 (STREAM_MAX_CLIENTS)."""
    stream_stall_s: float = Field(10.0, gt=0, le=3600)
    """An event stream whose client has taken nothing for this long is closed (STREAM_STALL_S)."""
    shutdown_grace_s: float = Field(3.0, ge=0, le=300)
    """``python -m functions``: how long requests in flight may take after SIGTERM (SHUTDOWN_GRACE_S)."""
    metrics: bool = True
    """Measure requests and calls (METRICS): Prometheus at /metrics under uvicorn, EMF on Lambda;
    false records nothing and serves no /metrics."""
    powertools_metrics_namespace: str = Field("RealtimePipeline", min_length=1, max_length=255, pattern=r"^[^:].*$")
    """On Lambda: the CloudWatch namespace of the EMF metrics (POWERTOOLS_METRICS_NAMESPACE)."""
    powertools_service_name: str = Field("pipeline-function", min_length=1, max_length=250)
    """On Lambda: the ``service`` dimension of the EMF metrics (POWERTOOLS_SERVICE_NAME)."""
    page_token_secret: SecretStr | None = None
    """Key that signs /raw-data page tokens (PAGE_TOKEN_SECRET); derived from the deployment when unset."""
    aggregate_pushdown: bool = True
    """/processed-data asks the ingestor for partial aggregates where they answer exactly, instead of
    every reading (AGGREGATE_PUSHDOWN); false: always the readings."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(origin.strip() for origin in value.split(",") if origin.strip())
        return value

    def page_token_key(self) -> bytes:
        secret = self.page_token_secret.get_secret_value() if self.page_token_secret else None
        return signing_key(secret, self.ingestor_address)


@lru_cache
def get_settings() -> FunctionSettings:
    """The settings, read once per process (they are immutable)."""
    return FunctionSettings()
