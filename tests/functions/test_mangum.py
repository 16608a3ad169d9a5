"""The Lambda path: the Mangum handler fed real API Gateway payloads, many times in one process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devtools.processes import ServerProcess
from devtools.waiting import wait_until
from functions.app import app, handler
from functions.settings import get_settings
from tests.support.events import LambdaContext, http_v2_event, rest_v1_event
from tests.support.factories import MakeProcess

EventFactory = Callable[..., dict[str, Any]]
PAYLOADS = [pytest.param(rest_v1_event, id="rest-v1"), pytest.param(http_v2_event, id="http-v2")]

# Each test is a new Lambda process, with the current event loop the handler runs on.
pytestmark = pytest.mark.usefixtures("lambda_main_thread_loop")


@pytest.fixture
def point_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    def aim(address: str) -> None:
        monkeypatch.setenv("INGESTOR_ADDRESS", address)
        get_settings.cache_clear()

    yield aim
    get_settings.cache_clear()


@pytest.fixture
def lambda_ingestor(
    point_at: Callable[[str], None], make_ingestor_process: MakeProcess, monkeypatch: pytest.MonkeyPatch
) -> ServerProcess:
    process = make_ingestor_process(capacity=10_000, rate_hz=200)
    # A process just started, on a machine busy with other tests, may take more than the default
    # second to finish its first handshake; these tests are not about that deadline (a refused
    # connection still fails at once: test_a_hundred_invocations_and_an_ingestor_restart).
    monkeypatch.setenv("INGESTOR_CONNECT_TIMEOUT_S", "10")
    point_at(process.address)
    return process


def invoke(make_event: EventFactory, method: str, path: str, **query: str) -> tuple[int, Any]:
    response = handler(make_event(method, path, query or None), LambdaContext())
    assert response["isBase64Encoded"] is False
    return response["statusCode"], json.loads(response["body"])


def wait_for_readings(make_event: EventFactory, more_than: int) -> None:
    def ingested() -> int:
        return int(invoke(make_event, "GET", "/api/v1/status")[1]["total_ingested"])

    wait_until(lambda: ingested() > more_than, 10, f"no more than {more_than} readings were generated")


@pytest.mark.parametrize("make_event", PAYLOADS)
def test_every_endpoint_through_the_handler(lambda_ingestor: ServerProcess, make_event: EventFactory) -> None:
    assert invoke(make_event, "GET", "/api/v1/health") == (200, {"status": "healthy"})
    assert invoke(make_event, "GET", "/api/v1/processed-data") == (200, [])
    assert invoke(make_event, "POST", "/api/v1/start-ingestion") == (200, {"message": "Data ingestion started"})
    assert invoke(make_event, "POST", "/api/v1/start-ingestion") == (
        200,
        {"message": "Data ingestion already running"},
    )
    wait_for_readings(make_event, 10)
    assert invoke(make_event, "POST", "/api/v1/stop-ingestion") == (200, {"message": "Data ingestion stopped"})
    assert invoke(make_event, "POST", "/api/v1/stop-ingestion") == (
        200,
        {"message": "Data ingestion already stopped"},
    )
    code, status = invoke(make_event, "GET", "/api/v1/status")
    assert code == 200
    assert status["running"] is False
    assert status["total_ingested"] == status["buffered"] + status["evicted"] > 10

    code, raw = invoke(make_event, "GET", "/api/v1/raw-data", limit="5")
    assert code == 200
    assert len(raw) == 5
    assert [sorted(item) for item in raw] == [["category", "timestamp", "value"]] * 5
    assert [item["timestamp"] for item in raw] == sorted(item["timestamp"] for item in raw)

    code, processed = invoke(make_event, "GET", "/api/v1/processed-data")
    assert code == 200
    assert [row["category"] for row in processed] == ["A", "B", "C"]
    assert sum(row["count"] for row in processed) == status["buffered"]
    assert max(row["last_timestamp"] for row in processed) == raw[-1]["timestamp"]

    code, error = invoke(make_event, "GET", "/api/v1/raw-data", limit="0")
    assert code == 422
    assert error["detail"][0]["loc"] == ["query", "limit"]
    assert invoke(make_event, "GET", "/api/v1/nowhere")[0] == 404


@pytest.mark.parametrize("make_event", PAYLOADS)
def test_a_hundred_invocations_and_an_ingestor_restart(
    lambda_ingestor: ServerProcess, make_event: EventFactory, make_ingestor_process: MakeProcess
) -> None:
    invoke(make_event, "POST", "/api/v1/start-ingestion")
    for i in range(100):
        path, method = [
            ("/api/v1/status", "GET"),
            ("/api/v1/raw-data", "GET"),
            ("/api/v1/processed-data", "GET"),
            ("/api/v1/health", "GET"),
            ("/api/v1/start-ingestion", "POST"),
        ][i % 5]
        code, body = invoke(make_event, method, path)
        assert code == 200, body
        if path == "/api/v1/status":
            assert body["total_ingested"] == body["buffered"] + body["evicted"]

    port = lambda_ingestor.port
    assert lambda_ingestor.stop() == 0
    down_started = time.monotonic()
    code, body = invoke(make_event, "GET", "/api/v1/status")
    assert (code, body) == (503, {"detail": "the ingestor is unavailable: it refused the connection"})
    assert time.monotonic() - down_started < 2

    make_ingestor_process(port=port, capacity=10_000, rate_hz=200)
    # The first call after the restart succeeds: no restart of the function needed.
    code, body = invoke(make_event, "GET", "/api/v1/status")
    assert code == 200, body
    assert body["total_ingested"] == 0  # a new ingestor: memory only
    for i in range(100):
        path = ("/api/v1/status", "/api/v1/raw-data", "/api/v1/processed-data")[i % 3]
        assert invoke(make_event, "GET", path)[0] == 200


def test_unreachable_ingestor_is_a_fast_503(point_at: Callable[[str], None]) -> None:
    point_at("127.0.0.1:9")  # discard port: nothing listens
    for path, method in [("/api/v1/status", "GET"), ("/api/v1/raw-data", "GET"), ("/api/v1/start-ingestion", "POST")]:
        started = time.monotonic()
        code, body = invoke(http_v2_event, method, path)
        assert code == 503
        assert "unavailable" in body["detail"]
        assert time.monotonic() - started < 2
    assert invoke(http_v2_event, "GET", "/api/v1/health") == (200, {"status": "healthy"})


def test_the_shared_channel_follows_the_event_loop(lambda_ingestor: ServerProcess) -> None:
    """TestClient runs the app on loops of its own; the handler on the process's loop. Mixing is fine."""
    for _ in range(2):
        with TestClient(app) as client:
            assert client.post("/api/v1/start-ingestion").status_code == 200
            assert client.get("/api/v1/status").json()["running"] is True
        code, body = invoke(rest_v1_event, "GET", "/api/v1/status")
        assert (code, body["running"]) == (200, True)
        with TestClient(app) as client:
            assert client.post("/api/v1/stop-ingestion").json() == {"message": "Data ingestion stopped"}
        assert invoke(http_v2_event, "POST", "/api/v1/stop-ingestion") == (
            200,
            {"message": "Data ingestion already stopped"},
        )


def test_next_page_link_keeps_the_stage_prefix(lambda_ingestor: ServerProcess) -> None:
    assert invoke(rest_v1_event, "POST", "/api/v1/start-ingestion")[0] == 200
    wait_for_readings(rest_v1_event, 2)  # more than a page of two
    invoke(rest_v1_event, "POST", "/api/v1/stop-ingestion")
    for make_event, prefix in ((rest_v1_event, "/prod"), (http_v2_event, "")):
        response = handler(make_event("GET", "/api/v1/raw-data", {"limit": "2"}), LambdaContext())
        headers = {name.lower(): value for name, value in response["headers"].items()}
        assert headers["link"].startswith(f"<{prefix}/api/v1/raw-data?limit=2&page_token=")
        assert headers["link"].endswith('>; rel="next"')
