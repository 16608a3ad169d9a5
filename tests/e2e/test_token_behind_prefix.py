"""API_TOKEN behind a path prefix: the same answers with and without one.

Behind ``uvicorn --root-path /prod`` or an API Gateway stage the request's path is
``/prod/api/v1/...``. Reads (with API_TOKEN_FOR_READS) and writes need the token there exactly as
without a prefix: under real uvicorn (``python -m functions`` and plain ``uvicorn``), and through
the Lambda handler fed a REST API stage event, an HTTP API named stage event and a ``$default``
one. The documentation's pages and /api/v1/health stay open; a path that is no endpoint needs the
token too when reads do, so an endpoint added later is covered.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from devtools.processes import ThreadedIngestor
from tests.support.clients import http_client
from tests.support.events import http_v2_event, rest_v1_event
from tests.support.factories import MakeProcess
from tests.support.lambda_process import invoke_cold, response_headers

API_TOKEN = "prefix-test-token"
GOOD = {"Authorization": f"Bearer {API_TOKEN}"}
WRONG = {"Authorization": f"Bearer {API_TOKEN}-not"}
NONE: dict[str, str] = {}

READS = ("/api/v1/status", "/api/v1/raw-data", "/api/v1/processed-data")
OPEN = ("/api/v1/health", "/docs", "/redoc", "/openapi.json")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    status: int


def expected_calls(protect_reads: bool, include_open_stream: bool, metrics_served: bool = False) -> list[Call]:
    """Every call and its status; the answers are the same with and without a prefix.

    ``include_open_stream``: whether to open /stream where it is allowed (a Lambda handler would
    wait for its end forever). ``metrics_served``: uvicorn serves /metrics, a Lambda handler does not.
    """
    read_without_token = 401 if protect_reads else 200
    calls = []
    for path in READS:
        calls += [
            Call("GET", path, NONE, read_without_token),
            Call("GET", path, WRONG, read_without_token),
            Call("GET", path, GOOD, 200),
        ]
    for path in OPEN:
        calls += [Call("GET", path, NONE, 200)]
    calls += [
        Call("GET", "/metrics", NONE, 401 if protect_reads else (200 if metrics_served else 404)),
        Call("GET", "/metrics", GOOD, 200 if metrics_served else 404),
        Call("GET", "/no-such-path", NONE, 401 if protect_reads else 404),
        Call("GET", "/no-such-path", GOOD, 404),
        Call("POST", "/api/v1/stop-ingestion", NONE, 401),
        Call("POST", "/api/v1/stop-ingestion", WRONG, 401),
        Call("POST", "/api/v1/stop-ingestion", GOOD, 200),
        Call("POST", "/api/v1/readings", NONE, 401),
    ]
    if protect_reads:
        calls += [Call("GET", "/api/v1/stream", NONE, 401), Call("GET", "/api/v1/stream", WRONG, 401)]
    if include_open_stream:
        calls += [Call("GET", "/api/v1/stream", GOOD, 200)]
        if not protect_reads:
            calls += [Call("GET", "/api/v1/stream", NONE, 200)]
    return calls


def assert_refusal(status: int, headers: dict[str, str], body: str, call: Call) -> None:
    if status != 401:
        return
    given = call.headers.get("Authorization")
    detail = "a bearer token is required" if given is None else "the bearer token is not valid"
    assert json.loads(body) == {"detail": detail}, call
    assert headers["www-authenticate"].startswith('Bearer realm="api"'), call
    assert API_TOKEN not in body


def token_env(protect_reads: bool) -> dict[str, str]:
    return {"API_TOKEN": API_TOKEN, "API_TOKEN_FOR_READS": str(protect_reads).lower()}


# --- under uvicorn ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "root_path", "protect_reads"),
    [
        ("python-m-functions", "/prod", True),
        ("python-m-functions", "/prod", False),
        ("python-m-functions", "", True),
        ("plain-uvicorn", "/prod", True),
    ],
    ids=["root-path-reads-protected", "root-path-writes-only", "no-root-path-reads-protected", "plain-uvicorn"],
)
def test_under_uvicorn_with_and_without_a_root_path(
    ingestor: ThreadedIngestor,
    server: str,
    root_path: str,
    protect_reads: bool,
    make_api_process: MakeProcess,
    make_uvicorn_process: MakeProcess,
) -> None:
    args = ("--root-path", root_path) if root_path else ()
    if server == "python-m-functions":
        api = make_api_process(ingestor.address, args=args, **token_env(protect_reads))
    else:
        api = make_uvicorn_process(
            "functions.app:app", args=args, INGESTOR_ADDRESS=ingestor.address, **token_env(protect_reads)
        )
    # A proxy in front took the prefix away: the client asked for /prod/api/v1/..., uvicorn
    # receives /api/v1/... and hands the app /prod/api/v1/... with root_path /prod.
    with http_client(f"http://{api.address}", timeout=10) as http:
        for call in expected_calls(protect_reads, include_open_stream=True, metrics_served=True):
            with http.stream(call.method, call.path, headers=call.headers) as response:
                assert response.status_code == call.status, (call, response.read())
                if call.path == "/api/v1/stream" and call.status == 200:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    continue  # leave the stream: closing the connection ends it
                assert_refusal(response.status_code, response.headers, response.read().decode(), call)
        # The docs still point under the prefix.
        assert http.get("/openapi.json").json().get("servers") == ([{"url": root_path}] if root_path else None)


# --- through the Lambda handler --------------------------------------------------------------

EventFactory = Callable[[str, str, dict[str, str]], dict[str, Any]]
GATEWAYS: dict[str, EventFactory] = {
    "rest-stage-prod": lambda method, path, headers: rest_v1_event(method, path, stage="prod", headers=headers),
    "http-named-stage": lambda method, path, headers: http_v2_event(method, path, stage="dev", headers=headers),
    "http-default-stage": lambda method, path, headers: http_v2_event(method, path, headers=headers),
}


@pytest.mark.slow  # a fresh interpreter, as a cold start
@pytest.mark.parametrize("protect_reads", [True, False], ids=["reads-protected", "writes-only"])
def test_through_the_lambda_handler_on_every_kind_of_stage(ingestor: ThreadedIngestor, protect_reads: bool) -> None:
    calls = expected_calls(protect_reads, include_open_stream=False)
    events = [make(call.method, call.path, call.headers) for make in GATEWAYS.values() for call in calls]
    # The stage prefix is really there: a REST stage event names /prod/... as the client's path,
    # a named HTTP API stage puts /dev/... in the path itself.
    assert events[0]["requestContext"]["path"].startswith("/prod/api/v1/")
    assert events[len(calls)]["rawPath"].startswith("/dev/api/v1/")
    answers = invoke_cold(events, {"INGESTOR_ADDRESS": ingestor.address, **token_env(protect_reads)})
    for index, (gateway, call) in enumerate((gateway, call) for gateway in GATEWAYS for call in calls):
        answer = answers[index]
        assert answer["statusCode"] == call.status, (gateway, call, answer["body"][:300])
        headers = {name: values[0] for name, values in response_headers(answer).items()}
        assert_refusal(answer["statusCode"], headers, answer["body"], call)
