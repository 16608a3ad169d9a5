"""Headers on every answer, whichever layer wrote it: nosniff always, no-store on JSON.

Checked under real uvicorn and through the Lambda handler, on answers of the routes and of the
middlewares in front of them (401 token, 413 body limit, 422 validation, 404, 405, 503 ingestor
down), on the HTML docs and on the event stream, which keeps its own ``Cache-Control: no-cache``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from functions.app import create_app
from functions.settings import FunctionSettings
from tests.support.clients import http_client
from tests.support.events import http_v2_event, rest_v1_event
from tests.support.factories import MakeIngestor, MakeProcess
from tests.support.lambda_process import invoke_cold, response_headers

API_TOKEN = "headers-test-token"
TOKEN = {"Authorization": f"Bearer {API_TOKEN}"}
MAX_BODY_BYTES = 1024
ENV = {"API_TOKEN": API_TOKEN, "API_TOKEN_FOR_READS": "true", "MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
JSON_ANSWER = "no-store"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int
    cache_control: str | None
    """The expected Cache-Control; None: the answer has none."""
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: str | None = None


TOO_LARGE = "[" + " " * MAX_BODY_BYTES + "]"

# Answers that do not need the ingestor.
WITHOUT_INGESTOR = [
    Call("GET", "/api/v1/health", 200, JSON_ANSWER),
    Call("GET", "/api/v1/status", 401, JSON_ANSWER),
    Call("GET", "/api/v1/status", 401, JSON_ANSWER, headers={"Authorization": "Bearer wrong"}),
    Call(
        "POST",
        "/api/v1/readings",
        413,
        JSON_ANSWER,
        headers={**TOKEN, "Content-Type": "application/json"},
        body=TOO_LARGE,
    ),
    Call("GET", "/api/v1/raw-data", 422, JSON_ANSWER, headers=TOKEN, query={"limit": "0"}),
    Call("GET", "/api/v1/processed-data", 422, JSON_ANSWER, headers=TOKEN, query={"window": "9" * 4301 + "s"}),
    Call("GET", "/api/v1/nowhere", 404, JSON_ANSWER, headers=TOKEN),
    Call("POST", "/api/v1/status", 405, JSON_ANSWER, headers=TOKEN),
    Call("GET", "/docs", 200, None, media_type="text/html"),
    Call("GET", "/openapi.json", 200, JSON_ANSWER),
]


def check(call: Call, status: int, headers: dict[str, list[str]]) -> None:
    assert status == call.status, call
    assert headers["x-content-type-options"] == ["nosniff"], call
    assert headers["content-type"][0].split(";")[0] == call.media_type, call
    assert headers.get("cache-control") == (None if call.cache_control is None else [call.cache_control]), call
    assert headers["x-request-id"], call


def header_lists(response: httpx.Response) -> dict[str, list[str]]:
    return {name: response.headers.get_list(name) for name in response.headers}


def test_under_uvicorn(make_ingestor: MakeIngestor, make_api_process: MakeProcess) -> None:
    ingestor = make_ingestor(capacity=100)
    api = make_api_process(ingestor.address, **ENV)
    with http_client(f"http://{api.address}", timeout=10) as http:
        for call in WITHOUT_INGESTOR:
            response = http.request(call.method, call.path, params=call.query, headers=call.headers, content=call.body)
            check(call, response.status_code, header_lists(response))
        started = Call("POST", "/api/v1/start-ingestion", 200, JSON_ANSWER, headers=TOKEN)
        response = http.post(started.path, headers=TOKEN)
        check(started, response.status_code, header_lists(response))
        stream = Call("GET", "/api/v1/stream", 200, "no-cache", media_type="text/event-stream", headers=TOKEN)
        with http.stream("GET", stream.path, headers=TOKEN) as response:
            check(stream, response.status_code, header_lists(response))
        ingestor.close()
        down = Call("GET", "/api/v1/status", 503, JSON_ANSWER, headers=TOKEN)
        response = http.get(down.path, headers=TOKEN)
        check(down, response.status_code, header_lists(response))


@pytest.mark.slow  # a fresh interpreter, as a cold start
def test_through_the_lambda_handler() -> None:
    calls = [
        *WITHOUT_INGESTOR,
        Call("GET", "/api/v1/status", 503, JSON_ANSWER, headers=TOKEN),
        # A Content-Length of more digits than Python converts to an int is too large, not a 500.
        Call("POST", "/api/v1/start-ingestion", 413, JSON_ANSWER, headers={**TOKEN, "Content-Length": "9" * 5000}),
    ]

    def content_length(call: Call) -> dict[str, str]:
        return {"Content-Length": str(len(call.body))} if call.body is not None else {}

    events = [
        make(
            call.method, call.path, call.query or None, headers={**content_length(call), **call.headers}, body=call.body
        )
        for make in (rest_v1_event, http_v2_event)
        for call in calls
    ]
    # Nothing listens on the discard port: the ingestor is down.
    answers = invoke_cold(events, {"INGESTOR_ADDRESS": "127.0.0.1:9", **ENV})
    for answer, call in zip(answers, calls * 2, strict=True):
        check(call, answer["statusCode"], response_headers(answer))


@pytest.mark.anyio
async def test_a_500_from_an_unexpected_error_carries_nosniff_too() -> None:
    app = create_app(FunctionSettings())
    assert isinstance(app, FastAPI)

    @app.get("/fails")
    async def fails() -> None:
        raise RuntimeError("an unexpected error")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/fails")
    assert response.status_code == 500
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]
    assert "an unexpected error" not in response.text
