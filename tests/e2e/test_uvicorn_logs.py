"""Plain ``uvicorn functions.app:app``, as the README shows it, logs JSON lines only and never a
query string: uvicorn's own access line (plain text, full query string) is off, its other lines
come out through the function's JSON formatter, and each request is logged once, by the app."""

from __future__ import annotations

import json

from devtools.processes import ThreadedIngestor
from tests.support.clients import http_client
from tests.support.factories import MakeProcess

SECRET = "query-secret-0c7d"


def test_plain_uvicorn_logs_json_only_and_no_query_string(
    ingestor: ThreadedIngestor, make_uvicorn_process: MakeProcess
) -> None:
    api = make_uvicorn_process("functions.app:app", INGESTOR_ADDRESS=ingestor.address)
    requests = [
        ("GET", f"/api/v1/health?access_token={SECRET}"),
        ("GET", f"/api/v1/raw-data?limit=5&token={SECRET}"),
        ("GET", f"/api/v1/processed-data?window=1m&{SECRET}=1"),
        ("GET", f"/api/v1/nowhere?{SECRET}"),
        ("POST", f"/api/v1/stop-ingestion?key={SECRET}"),
    ]
    with http_client(f"http://{api.address}", timeout=10) as http:
        statuses = [http.request(method, path).status_code for method, path in requests]
    assert statuses == [200, 200, 200, 404, 200]
    api.stop()  # returns once its last line is read

    lines = [line for line in api.output if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(entry, dict) for entry in entries)
    assert not [line for line in lines if SECRET in line]
    # uvicorn's own lines are there, as JSON.
    messages = [entry["message"] for entry in entries if entry["logger"].startswith("uvicorn")]
    assert any(message.startswith("Uvicorn running on http://127.0.0.1:") for message in messages)
    assert "Finished server process" in " ".join(messages)
    assert not [entry for entry in entries if entry["logger"] == "uvicorn.access"]
    # One access line a request, the app's own: method, path without its query, status.
    access = [
        (entry["method"], entry["path"], entry["status"]) for entry in entries if entry["logger"] == "functions.access"
    ]
    assert access == [
        ("GET", "/api/v1/health", 200),
        ("GET", "/api/v1/raw-data", 200),
        ("GET", "/api/v1/processed-data", 200),
        ("GET", "/api/v1/nowhere", 404),
        ("POST", "/api/v1/stop-ingestion", 200),
    ]
