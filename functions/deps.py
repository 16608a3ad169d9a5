"""What the routes depend on: the settings, and a client of the ingestor made with them.

Dependencies are coroutines: FastAPI runs a plain function dependency in its worker thread pool, a
hand-off to another thread and back on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from functions.client import IngestorClient
from functions.settings import FunctionSettings, get_settings


async def current_settings() -> FunctionSettings:
    """The process's settings; ``create_app(settings)`` overrides this dependency."""
    return get_settings()


Settings = Annotated[FunctionSettings, Depends(current_settings)]


async def get_client(settings: Settings) -> IngestorClient:
    return IngestorClient(settings)


Client = Annotated[IngestorClient, Depends(get_client)]
