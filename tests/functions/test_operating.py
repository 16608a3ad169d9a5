"""/metrics under uvicorn (outside the API and its schema, guarded like a read) and /api/v1/ready."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from grpc_health.v1 import health_pb2

from devtools.processes import LOCALHOST, ThreadedIngestor
from functions.app import create_app
from functions.channel import close_shared_channel
from functions.settings import FunctionSettings
from tests.support.scrape import parse, value

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-token"


@asynccontextmanager
async def root_client(**settings: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(FunctionSettings(**settings))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            yield client
    finally:
        await close_shared_channel()


async def test_metrics_count_requests_by_route_template(ingestor: ThreadedIngestor) -> None:
    async with root_client(ingestor_address=ingestor.address) as http:
        before = parse((await http.get("/metrics")).text)
        for limit in (1, 2, 3):
            assert (await http.get("/api/v1/raw-data", params={"limit": limit})).status_code == 200
        assert (await http.get("/api/v1/raw-data", params={"limit": 0})).status_code == 422
        response = await http.get("/metrics")
        schema = (await http.get("/openapi.json")).json()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = parse(response.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - before.get((name, frozenset(labels.items())), 0.0)

    ok = {"route": "/api/v1/raw-data", "method": "GET", "status_class": "2xx"}
    assert grew("function_http_requests_total", **ok) == 3
    assert grew("function_http_request_duration_seconds_count", **ok) == 3
    assert grew("function_http_requests_total", **{**ok, "status_class": "4xx"}) == 1
    assert not any("limit" in dict(labels).get("route", "") for _, labels in after)
    assert "/metrics" not in schema["paths"]


async def test_metrics_need_the_token_when_reads_do(ingestor: ThreadedIngestor) -> None:
    async with root_client(ingestor_address=ingestor.address, api_token=TOKEN, api_token_for_reads=True) as http:
        assert (await http.get("/metrics")).status_code == 401
        authorized = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert authorized.status_code == 200
        assert "function_http_requests_total" in authorized.text
        # Readiness is for probes, which carry no token, as /health is.
        assert (await http.get("/api/v1/ready")).status_code == 200


async def test_ready_once_the_ingestor_answers_its_health_check(ingestor: ThreadedIngestor) -> None:
    async with root_client(ingestor_address=ingestor.address) as http:
        assert (await http.get("/api/v1/ready")).json() == {"status": "ready"}
        ingestor.call(ingestor.running.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING))
        response = await http.get("/api/v1/ready")
        assert (response.status_code, response.json()) == (
            503,
            {"detail": "the ingestor is not serving (NOT_SERVING)"},
        )
        assert (await http.get("/api/v1/health")).json() == {"status": "healthy"}


async def test_not_ready_without_an_ingestor() -> None:
    with socket.socket() as unused:
        unused.bind((LOCALHOST, 0))
        address = f"{LOCALHOST}:{unused.getsockname()[1]}"
    async with root_client(ingestor_address=address, ingestor_connect_timeout_s=0.5) as http:
        response = await http.get("/api/v1/ready")
    assert response.status_code == 503
    assert "ingestor" in response.json()["detail"]


async def test_metrics_off_serves_no_metrics(ingestor: ThreadedIngestor) -> None:
    async with root_client(ingestor_address=ingestor.address, metrics=False) as http:
        assert (await http.get("/api/v1/raw-data")).status_code == 200
        assert (await http.get("/metrics")).status_code == 404
