"""Who may drive the API, what it tells callers, and how requests are traced to the ingestor."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request

from devtools.processes import ThreadedIngestor
from functions.app import create_app
from functions.limits import BodySizeLimitMiddleware
from functions.settings import FunctionSettings
from tests.support.certs import make_self_signed
from tests.support.clients import api_http
from tests.support.factories import MakeIngestor, MakeStack
from tests.support.inprocess import api_client

pytestmark = pytest.mark.anyio

API_TOKEN = "api-token-not-to-be-echoed"
INGESTOR_TOKEN = "ingestor-token-not-to-be-echoed"


async def test_writes_need_the_api_token_and_reads_stay_open(ingestor: ThreadedIngestor) -> None:
    async with api_client(ingestor_address=ingestor.address, api_token=API_TOKEN) as http:
        for path in ("/start-ingestion", "/stop-ingestion"):
            missing = await http.post(path)
            assert (missing.status_code, missing.json()) == (401, {"detail": "a bearer token is required"})
            assert missing.headers["www-authenticate"] == 'Bearer realm="api"'
            for wrong in (f"Bearer {API_TOKEN}x", API_TOKEN, f"Basic {API_TOKEN}", "Bearer "):
                refused = await http.post(path, headers={"Authorization": wrong})
                assert (refused.status_code, refused.json()) == (401, {"detail": "the bearer token is not valid"})
                assert refused.headers["www-authenticate"].startswith("Bearer")
                assert API_TOKEN not in refused.text
        # Nothing was started by the refused calls.
        assert (await http.get("/status")).json()["running"] is False
        assert ingestor.running.generator.running is False

        started = await http.post("/start-ingestion", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert (started.status_code, started.json()) == (200, {"message": "Data ingestion started"})
        assert (await http.get("/status")).json()["running"] is True
        assert (await http.get("/raw-data", params={"limit": 5})).status_code == 200
        assert (await http.get("/processed-data")).status_code == 200
        stopped = await http.post("/stop-ingestion", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert stopped.json() == {"message": "Data ingestion stopped"}


def test_the_schema_documents_the_token_and_the_body_limit() -> None:
    open_schema = create_app(FunctionSettings()).openapi()
    start = open_schema["paths"]["/api/v1/start-ingestion"]["post"]
    assert "413" in start["responses"]
    assert "401" not in start["responses"]
    assert "securitySchemes" not in open_schema.get("components", {})

    guarded = create_app(FunctionSettings(api_token=API_TOKEN)).openapi()
    assert guarded["components"]["securitySchemes"] == {"bearerToken": {"type": "http", "scheme": "bearer"}}
    start = guarded["paths"]["/api/v1/start-ingestion"]["post"]
    assert (start["security"], "401" in start["responses"]) == ([{"bearerToken": []}], True)
    assert "401" not in guarded["paths"]["/api/v1/status"]["get"]["responses"]
    assert API_TOKEN not in str(guarded)


async def test_reads_can_require_the_token_too_but_health_never_does(ingestor: ThreadedIngestor) -> None:
    async with api_client(ingestor_address=ingestor.address, api_token=API_TOKEN, api_token_for_reads=True) as http:
        for path in ("/status", "/raw-data", "/processed-data"):
            assert (await http.get(path)).status_code == 401
            assert (await http.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"})).status_code == 200
        assert (await http.get("/health")).json() == {"status": "healthy"}


async def test_without_an_api_token_every_call_is_open(ingestor: ThreadedIngestor) -> None:
    async with api_client(ingestor_address=ingestor.address) as http:
        assert (await http.post("/start-ingestion")).json() == {"message": "Data ingestion started"}
        assert (await http.post("/stop-ingestion")).json() == {"message": "Data ingestion stopped"}


async def test_cors_is_closed_by_default_and_open_only_to_configured_origins(ingestor: ThreadedIngestor) -> None:
    origin = {"Origin": "https://dashboard.example"}
    async with api_client(ingestor_address=ingestor.address) as http:
        response = await http.get("/health", headers=origin)
        assert "access-control-allow-origin" not in response.headers
        preflight = await http.options("/start-ingestion", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers
    async with api_client(ingestor_address=ingestor.address, cors_origins="https://dashboard.example") as http:
        response = await http.get("/health", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://dashboard.example"
        other = await http.get("/health", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


JSON = {"Content-Type": "application/json"}


async def test_bodies_over_the_limit_are_413_and_change_nothing(ingestor: ThreadedIngestor) -> None:
    async with api_client(ingestor_address=ingestor.address, max_body_bytes=1024) as http:
        at_the_limit = b"{}" + b" " * 1022  # a valid (empty) start configuration, padded to the limit
        response = await http.post("/start-ingestion", content=at_the_limit + b" ", headers=JSON)
        assert (response.status_code, response.json()) == (
            413,
            {"detail": "the request body must be at most 1024 bytes"},
        )
        bad_length = await http.post("/start-ingestion", headers={"Content-Length": "12ab"}, content=b"")
        assert bad_length.status_code == 400
        # More digits than Python converts to an int (4,300): too large all the same, not a 500.
        huge_length = await http.post("/start-ingestion", headers={"Content-Length": "9" * 5000}, content=b"")
        assert (huge_length.status_code, huge_length.json()) == (
            413,
            {"detail": "the request body must be at most 1024 bytes"},
        )
        assert ingestor.running.generator.running is False
        response = await http.post("/start-ingestion", content=at_the_limit, headers=JSON)
        assert (response.status_code, response.json()) == (200, {"message": "Data ingestion started"})


async def test_header_bytes_beyond_ascii_are_refused_not_a_500(ingestor: ThreadedIngestor) -> None:
    """Headers arrive as bytes that Starlette reads as latin-1: b"\\xb2" is "²", a digit to str.isdigit()."""
    async with api_client(ingestor_address=ingestor.address, api_token=API_TOKEN) as http:
        token = (b"Authorization", f"Bearer {API_TOKEN}".encode())
        superscript = await http.post("/start-ingestion", headers=[token, (b"Content-Length", b"\xb2")], content=b"")
        assert (superscript.status_code, superscript.json()) == (
            400,
            {"detail": "the Content-Length header is not a number"},
        )
        beyond_ascii = await http.post("/start-ingestion", headers=[(b"Authorization", b"Bearer \xe9t\xe9")])
        assert (beyond_ascii.status_code, beyond_ascii.json()) == (401, {"detail": "the bearer token is not valid"})
        assert (await http.get("/status")).json()["running"] is False


async def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo_length(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    app.add_middleware(BodySizeLimitMiddleware, max_bytes=100)

    async def chunks(count: int):  # type: ignore[no-untyped-def]
        for _ in range(count):
            yield b"0123456789"

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        assert (await http.post("/echo", content=chunks(10))).json() == {"length": 100}
        response = await http.post("/echo", content=chunks(11))
        assert (response.status_code, response.json()) == (
            413,
            {"detail": "the request body must be at most 100 bytes"},
        )


async def test_request_ids_are_returned_and_only_well_formed_ones_are_kept(ingestor: ThreadedIngestor) -> None:
    async with api_client(ingestor_address=ingestor.address) as http:
        given = await http.get("/status", headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        made_up = await http.get("/status")
        assert len(made_up.headers["x-request-id"]) == 32
        hostile = await http.get("/health", headers={"X-Request-ID": "a b\tc" + "x" * 200})
        assert hostile.headers["x-request-id"] != "a b\tc" + "x" * 200
        assert len(hostile.headers["x-request-id"]) == 32


def test_the_request_id_reaches_the_ingestor_and_both_log_json(make_stack: MakeStack) -> None:
    ingestor, api = make_stack(log_level="DEBUG")
    with api_http(api) as http:
        response = http.get("/status", headers={"X-Request-ID": "trace-me-42"})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "trace-me-42"
    assert api.stop() == 0
    assert ingestor.stop() == 0
    ingestor_calls = [json.loads(line) for line in ingestor.output]
    assert any(
        entry.get("request_id") == "trace-me-42" and entry.get("method") == "/ingestor.v1.IngestorService/GetStatus"
        for entry in ingestor_calls
    )
    api_lines = [json.loads(line) for line in api.output]
    assert {
        "message": "request",
        "request_id": "trace-me-42",
        "method": "GET",
        "path": "/api/v1/status",
        "status": 200,
    }.items() <= next(entry for entry in api_lines if entry.get("request_id") == "trace-me-42").items()


async def test_the_function_sends_the_ingestor_token(make_ingestor: MakeIngestor) -> None:
    guarded = make_ingestor(capacity=100, token=INGESTOR_TOKEN)
    async with api_client(ingestor_address=guarded.address, ingestor_token=INGESTOR_TOKEN) as http:
        assert (await http.post("/start-ingestion")).status_code == 200
        assert (await http.get("/status")).json()["running"] is True
    async with api_client(ingestor_address=guarded.address, ingestor_token="wrong") as http:
        response = await http.get("/status")
        assert (response.status_code, response.json()) == (502, {"detail": "the ingestor failed (UNAUTHENTICATED)"})
    async with api_client(ingestor_address=guarded.address) as http:
        response = await http.get("/raw-data")
        assert response.status_code == 502
        assert INGESTOR_TOKEN not in response.text
        assert guarded.address not in response.text


async def test_the_function_reaches_a_tls_ingestor_through_a_configured_ca(
    tmp_path: Path, make_ingestor: MakeIngestor
) -> None:
    files = make_self_signed(tmp_path)
    server = make_ingestor(capacity=100, tls_cert_file=files.certificate, tls_key_file=files.key)
    async with api_client(ingestor_address=server.address, ingestor_ca_file=files.certificate) as http:
        response = await http.get("/status")
        assert (response.status_code, response.json()["capacity"]) == (200, 100)
    # Without the CA (plaintext), the ingestor cannot be reached: 503, not a hang or a 500.
    async with api_client(ingestor_address=server.address) as http:
        assert (await http.get("/status")).status_code == 503


def test_the_schema_documents_the_token_on_reads_when_they_need_it() -> None:
    schema = create_app(FunctionSettings(api_token=API_TOKEN, api_token_for_reads=True)).openapi()
    documented = {
        (path, method): "401" in operation["responses"] and operation.get("security") == [{"bearerToken": []}]
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    assert documented == {
        ("/api/v1/health", "get"): False,
        ("/api/v1/ready", "get"): False,
        ("/api/v1/start-ingestion", "post"): True,
        ("/api/v1/stop-ingestion", "post"): True,
        ("/api/v1/raw-data", "get"): True,
        ("/api/v1/processed-data", "get"): True,
        ("/api/v1/history", "get"): True,
        ("/api/v1/status", "get"): True,
        ("/api/v1/readings", "post"): True,
        ("/api/v1/stream", "get"): True,
        ("/api/v1/export", "get"): True,
        ("/api/v1/stream/aggregates", "get"): True,
    }
    assert "401" not in schema["paths"]["/api/v1/health"]["get"]["responses"]
