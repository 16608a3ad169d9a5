"""The API in this process, called through httpx without a socket, against a real ingestor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from functions.app import create_app
from functions.channel import close_shared_channel
from functions.settings import FunctionSettings


@asynccontextmanager
async def api_client(**settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of ``create_app(FunctionSettings(**settings))``; closes the gRPC channel after."""
    app = create_app(FunctionSettings(**settings))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/api/v1", timeout=30) as client:
            yield client
    finally:
        await close_shared_channel()
