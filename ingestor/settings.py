"""The ingestor's configuration, read from ``INGESTOR_*`` environment variables."""

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ingestor.store import validate_category


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
    shutdown_grace_s: float = Field(5.0, ge=0)
    """How long in-flight calls may take to finish after SIGTERM."""

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
            problem = validate_category(name)
            if problem:
                raise ValueError(problem)
        if len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        return value
