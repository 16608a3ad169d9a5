"""The function's configuration, read from the environment."""

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from functions.paging import signing_key


class FunctionSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    ingestor_address: str = "127.0.0.1:50051"
    """host:port of the ingestor's gRPC server (INGESTOR_ADDRESS)."""
    ingestor_timeout_s: float = Field(5.0, gt=0, le=300)
    """Deadline of every call to the ingestor (INGESTOR_TIMEOUT_S)."""
    ingestor_connect_timeout_s: float = Field(1.0, gt=0, le=60)
    """How long to wait for a connection before answering 503 (INGESTOR_CONNECT_TIMEOUT_S)."""
    page_token_secret: SecretStr | None = None
    """Key that signs /raw-data page tokens (PAGE_TOKEN_SECRET); derived from the deployment when unset."""

    def page_token_key(self) -> bytes:
        secret = self.page_token_secret.get_secret_value() if self.page_token_secret else None
        return signing_key(secret, self.ingestor_address)


@lru_cache
def get_settings() -> FunctionSettings:
    """The settings, read once per process (they are immutable)."""
    return FunctionSettings()
