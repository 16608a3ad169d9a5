"""Requests are served on the event loop: no hand-off to a worker thread and back on the way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
import pytest

from devtools.processes import ThreadedIngestor
from tests.support.endpoints import DATA_ENDPOINTS
from tests.support.inprocess import api_client


@pytest.mark.anyio
async def test_no_endpoint_runs_anything_in_the_thread_pool(
    ingestor: ThreadedIngestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed_off: list[str] = []

    async def refuse(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        handed_off.append(getattr(func, "__qualname__", repr(func)))
        return func(*args, **kwargs)

    # FastAPI runs plain-function dependencies and endpoints through these.
    monkeypatch.setattr(fastapi.dependencies.utils, "run_in_threadpool", refuse)
    monkeypatch.setattr(fastapi.routing, "run_in_threadpool", refuse)
    async with api_client(ingestor_address=ingestor.address) as client:
        for method, url, body in [("GET", "/health", None), *DATA_ENDPOINTS]:
            response = await client.request(method, url, json=body)
            assert response.status_code < 300, (url, response.text)
    assert handed_off == []
