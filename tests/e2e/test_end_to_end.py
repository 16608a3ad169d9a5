"""The user's walk-through over real HTTP: uvicorn and `python -m ingestor` as subprocesses."""

from __future__ import annotations

import signal
import statistics
import time
from collections import defaultdict
from datetime import datetime

from devtools.processes import ServerProcess
from tests.support.clients import api_http, http_client
from tests.support.factories import MakeProcess


def test_happy_path_with_exact_bodies(api_process: ServerProcess) -> None:
    with api_http(api_process) as http:
        assert http.get("/health").json() == {"status": "healthy"}
        response = http.post("/start-ingestion")
        assert (response.status_code, response.json()) == (200, {"message": "Data ingestion started"})
        time.sleep(0.5)  # 50 readings a second

        raw = http.get("/raw-data").json()
        assert len(raw) >= 10
        for item in raw:
            assert list(item) == ["timestamp", "value", "category"]
            assert item["category"] in {"A", "B", "C"}
            assert isinstance(item["value"], float)
            assert len(item["timestamp"]) == len("2024-01-20T10:00:00.000000Z")
            assert item["timestamp"].endswith("Z")
            datetime.fromisoformat(item["timestamp"])

        response = http.post("/stop-ingestion")
        assert (response.status_code, response.json()) == (200, {"message": "Data ingestion stopped"})
        raw = http.get("/raw-data", params={"limit": 10_000}).json()
        processed = http.get("/processed-data").json()

        # An independent computation from the raw readings, in plain Python.
        by_category: dict[str, list[dict[str, object]]] = defaultdict(list)
        for item in raw:
            by_category[item["category"]].append(item)
        expected = [
            {
                "category": category,
                "avg_value": statistics.fmean(item["value"] for item in items),  # type: ignore[misc]
                "count": len(items),
                "last_timestamp": max(item["timestamp"] for item in items),  # type: ignore[type-var]
            }
            for category, items in sorted(by_category.items())
        ]
        assert [list(row) for row in processed] == [["category", "avg_value", "count", "last_timestamp"]] * len(
            expected
        )
        assert [{**row, "avg_value": round(row["avg_value"], 9)} for row in processed] == [
            {**row, "avg_value": round(row["avg_value"], 9)} for row in expected
        ]
        status = http.get("/status").json()
        assert status == {
            "running": False,
            "total_ingested": len(raw),
            "buffered": len(raw),
            "evicted": 0,
            "capacity": 100_000,
            "rate_hz": 50.0,
        }
        # Stopped means stopped: nothing more arrives.
        time.sleep(0.2)
        assert http.get("/status").json()["total_ingested"] == len(raw)


def test_limit_validation_and_docs(api_process: ServerProcess) -> None:
    with http_client(f"http://{api_process.address}", timeout=10) as http:
        for bad in ("0", "10001", "-5", "abc"):
            response = http.get("/api/v1/raw-data", params={"limit": bad})
            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["query", "limit"]
        schema = http.get("/openapi.json").json()
        assert set(schema["paths"]) == {
            "/api/v1/health",
            "/api/v1/ready",
            "/api/v1/start-ingestion",
            "/api/v1/stop-ingestion",
            "/api/v1/raw-data",
            "/api/v1/processed-data",
            "/api/v1/status",
            "/api/v1/readings",
            "/api/v1/stream",
            "/api/v1/export",
            "/api/v1/history",
            "/api/v1/stream/aggregates",
        }


def test_api_answers_503_fast_when_the_ingestor_goes_away(
    ingestor_process: ServerProcess, api_process: ServerProcess
) -> None:
    with api_http(api_process) as http:
        assert http.get("/status").status_code == 200
        ingestor_process.stop()
        started = time.monotonic()
        response = http.get("/processed-data")
        assert response.status_code == 503
        assert response.json() == {"detail": "the ingestor is unavailable: it refused the connection"}
        assert time.monotonic() - started < 2
        assert http.get("/health").json() == {"status": "healthy"}


def test_sigterm_and_sigint_shut_the_ingestor_down_cleanly(make_ingestor_process: MakeProcess) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        process = make_ingestor_process(rate_hz=1000)
        started = time.monotonic()
        assert process.stop(signum) == 0
        assert time.monotonic() - started < 5
        assert "stopped" in process.output[-1]


def test_sigterm_stops_the_api_cleanly(api_process: ServerProcess) -> None:
    assert api_process.stop(signal.SIGTERM) == 0


def test_every_endpoint_documents_its_models_and_examples() -> None:
    from functions.app import app

    schema = app.openapi()
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            success = next(code for code in operation["responses"] if code.startswith("2"))
            content = operation["responses"][success]["content"]
            assert content, (method, path)
            if method == "post" and path in ("/api/v1/readings", "/api/v1/start-ingestion"):
                assert "application/json" in operation["requestBody"]["content"], path
    for name in ("RawReading", "CategoryStats", "WindowedStats", "StatusResponse", "StartConfig", "AcceptedResponse"):
        properties = components[name]["properties"]
        assert all("examples" in field for field in properties.values()), name
    readings_body = schema["paths"]["/api/v1/readings"]["post"]["requestBody"]["content"]["application/json"]
    assert readings_body["schema"]["maxItems"] == 10_000
    assert readings_body["example"][0] == {"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"}
    stream = schema["paths"]["/api/v1/stream"]["get"]["responses"]["200"]["content"]
    assert "event: gap" in stream["text/event-stream"]["example"]
