"""Behind API Gateway: a REST API stage (/prod/...), an HTTP API on $default and on a named stage.

Every endpoint routes through the Lambda handler, and the interactive docs load their OpenAPI
document from under the same prefix the client used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.processes import ThreadedIngestor
from devtools.waiting import wait_until
from functions.app import handler
from functions.gateway import gateway_prefix
from functions.settings import get_settings
from tests.support.events import LambdaContext, http_v2_event, rest_v1_event


@dataclass(frozen=True)
class Gateway:
    """How a client URL under ``prefix`` reaches the function as an event."""

    prefix: str
    make_event: Callable[[str, str, dict[str, str] | None], dict[str, Any]]

    def invoke(self, method: str, client_path: str, **query: str) -> dict[str, Any]:
        assert client_path.startswith(f"{self.prefix}/"), client_path
        app_path = client_path.removeprefix(self.prefix)
        return handler(self.make_event(method, app_path, query or None), LambdaContext())

    def call(self, method: str, app_path: str, **query: str) -> tuple[int, Any]:
        response = self.invoke(method, self.prefix + app_path, **query)
        return response["statusCode"], json.loads(response["body"])


GATEWAYS = [
    pytest.param(Gateway("/prod", lambda m, p, q: rest_v1_event(m, p, q, stage="prod")), id="rest-stage-prod"),
    pytest.param(Gateway("", lambda m, p, q: http_v2_event(m, p, q)), id="http-default-stage"),
    pytest.param(Gateway("/dev", lambda m, p, q: http_v2_event(m, p, q, stage="dev")), id="http-named-stage"),
]

# Each test is a new Lambda process, with the current event loop the handler runs on.
pytestmark = pytest.mark.usefixtures("lambda_main_thread_loop")


@pytest.fixture
def function_ingestor(ingestor: ThreadedIngestor, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedIngestor]:
    monkeypatch.setenv("INGESTOR_ADDRESS", ingestor.address)
    get_settings.cache_clear()
    yield ingestor
    get_settings.cache_clear()


@pytest.mark.parametrize("gateway", GATEWAYS)
def test_every_endpoint_routes_behind_the_prefix(function_ingestor: ThreadedIngestor, gateway: Gateway) -> None:
    assert gateway.call("GET", "/api/v1/health") == (200, {"status": "healthy"})
    assert gateway.call("POST", "/api/v1/start-ingestion") == (200, {"message": "Data ingestion started"})
    code, status = gateway.call("GET", "/api/v1/status")
    assert code == 200
    assert status["running"] is True
    wait_until(lambda: gateway.call("GET", "/api/v1/status")[1]["total_ingested"], 5, "nothing was generated")
    assert gateway.call("POST", "/api/v1/stop-ingestion") == (200, {"message": "Data ingestion stopped"})
    code, status = gateway.call("GET", "/api/v1/status")
    assert (code, status["running"]) == (200, False)
    assert status["buffered"] >= 1
    code, raw = gateway.call("GET", "/api/v1/raw-data", limit="1000")
    assert code == 200
    assert len(raw) == status["buffered"]
    code, processed = gateway.call("GET", "/api/v1/processed-data")
    assert code == 200
    assert sum(row["count"] for row in processed) == status["buffered"]
    code, error = gateway.call("GET", "/api/v1/raw-data", limit="0")
    assert (code, error["detail"][0]["loc"]) == (422, ["query", "limit"])
    assert gateway.call("GET", "/api/v1/nowhere") == (404, {"detail": "Not Found"})


@pytest.mark.parametrize("gateway", GATEWAYS)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_the_openapi_document_from_under_the_prefix(gateway: Gateway, page: str) -> None:
    response = gateway.invoke("GET", f"{gateway.prefix}{page}")
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"].startswith("text/html")
    html = response["body"]
    # What the browser fetches next, exactly as the page names it.
    openapi_urls = re.findall(r"""(?:url: '|spec-url=")([^'"]+)""", html)
    assert openapi_urls == [f"{gateway.prefix}/openapi.json"]

    fetched = gateway.invoke("GET", openapi_urls[0])
    assert fetched["statusCode"] == 200
    document = json.loads(fetched["body"])
    assert document["info"]["title"] == "Real-time data pipeline"
    assert {"/api/v1/health", "/api/v1/raw-data", "/api/v1/processed-data"} <= set(document["paths"])
    # "Try it out" sends requests to the servers listed: under the prefix too.
    assert document.get("servers") == ([{"url": gateway.prefix}] if gateway.prefix else None)


@pytest.mark.parametrize(
    ("event", "prefix"),
    [
        (rest_v1_event("GET", "/api/v1/health", stage="prod"), "/prod"),
        (rest_v1_event("GET", "/", stage="prod"), "/prod"),
        (rest_v1_event("GET", "/docs", stage="v2-beta"), "/v2-beta"),
        (http_v2_event("GET", "/api/v1/health"), ""),
        (http_v2_event("GET", "/api/v1/health", stage="dev"), "/dev"),
        (http_v2_event("GET", "/", stage="dev"), "/dev"),
        ({"path": "/api/v1/health", "httpMethod": "GET", "requestContext": {}}, ""),
    ],
)
def test_the_prefix_read_from_an_event(event: dict[str, Any], prefix: str) -> None:
    assert gateway_prefix(event) == prefix
