"""POST /api/v1/readings with an Idempotency-Key: a retry is acknowledged again, never stored twice,
even across a crash of a durable ingestor."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from devtools.processes import ServerProcess
from tests.support.clients import api_http
from tests.support.factories import MakeProcess, MakeStack

BATCH = [
    {"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"},
    {"timestamp": "2024-01-20T10:00:01Z", "value": 44.5, "category": "B"},
]


def status(http: httpx.Client) -> dict[str, object]:
    return http.get("/status").json()


def test_a_retried_key_is_acknowledged_again_and_stored_once(api_process: ServerProcess) -> None:
    with api_http(api_process, timeout=20) as http:
        first = http.post("/readings", json=BATCH, headers={"Idempotency-Key": "batch-0001"})
        assert (first.status_code, first.json()) == (202, {"accepted": 2})
        assert "idempotent-replayed" not in first.headers
        retry = http.post("/readings", json=BATCH, headers={"Idempotency-Key": "batch-0001"})
        assert (retry.status_code, retry.json(), retry.headers["idempotent-replayed"]) == (202, {"accepted": 2}, "true")
        other = http.post("/readings", json=BATCH, headers={"Idempotency-Key": "batch-0002"})
        assert (other.status_code, other.json()) == (202, {"accepted": 2})
        assert http.post("/readings", json=BATCH).json() == {"accepted": 2}  # no key: stored every time
        assert status(http)["total_ingested"] == 6
        assert "durable" not in status(http)  # memory-only mode keeps the original shape

        for bad in ("has space", "x" * 129, "tab\there"):
            response = http.post("/readings", json=BATCH, headers={"Idempotency-Key": bad})
            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        assert status(http)["total_ingested"] == 6


@pytest.fixture
def durable_pair(tmp_path: Path, make_stack: MakeStack) -> tuple[ServerProcess, ServerProcess, Path]:
    data_dir = tmp_path / "data"
    ingestor, api = make_stack(data_dir=data_dir)
    return ingestor, api, data_dir


def test_a_retry_after_a_crash_is_not_stored_twice(
    durable_pair: tuple[ServerProcess, ServerProcess, Path], make_ingestor_process: MakeProcess
) -> None:
    ingestor, api, data_dir = durable_pair
    with api_http(api, timeout=20) as http:
        assert http.post("/readings", json=BATCH, headers={"Idempotency-Key": "k-1"}).json() == {"accepted": 2}
        before = status(http)
        assert before["durable"] is True
        assert before["data_dir_bytes"] > 0
        # The producer never saw the answer (say), and the ingestor crashes before it retries.
        ingestor.stop(signal.SIGKILL)
        make_ingestor_process(port=ingestor.port, data_dir=data_dir)
        retry = http.post("/readings", json=BATCH, headers={"Idempotency-Key": "k-1"})
        assert (retry.status_code, retry.json(), retry.headers.get("idempotent-replayed")) == (
            202,
            {"accepted": 2},
            "true",
        )
        after = status(http)
        assert (after["total_ingested"], after["buffered"], after["evicted"]) == (2, 2, 0)
        assert http.get("/raw-data").json() == [
            {"timestamp": "2024-01-20T10:00:00.000000Z", "value": 42.5, "category": "A"},
            {"timestamp": "2024-01-20T10:00:01.000000Z", "value": 44.5, "category": "B"},
        ]
