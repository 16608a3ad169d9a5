"""POST /api/v1/readings over real HTTP: limits, all-or-nothing validation, and where the readings show up."""

from __future__ import annotations

import json

import httpx
import pytest

from devtools.processes import ServerProcess
from tests.support.clients import api_http


@pytest.fixture
def http(api_process: ServerProcess) -> httpx.Client:
    with api_http(api_process, timeout=20) as client:
        yield client


def total(http: httpx.Client) -> int:
    return http.get("/status").json()["total_ingested"]


def test_pushed_readings_show_up_in_raw_and_processed_data(http: httpx.Client) -> None:
    body = [
        {"timestamp": "2024-01-20T10:00:00Z", "value": 42.5, "category": "A"},
        {"timestamp": "2024-01-20T10:00:01.250000", "value": 43, "category": "sensor-7.b_x"},
        {"timestamp": "2024-01-20T11:00:02+01:00", "value": -1.5e3, "category": "A"},
    ]
    response = http.post("/readings", json=body)
    assert (response.status_code, response.json()) == (202, {"accepted": 3})
    assert http.get("/raw-data").json() == [
        {"timestamp": "2024-01-20T10:00:00.000000Z", "value": 42.5, "category": "A"},
        {"timestamp": "2024-01-20T10:00:01.250000Z", "value": 43.0, "category": "sensor-7.b_x"},
        {"timestamp": "2024-01-20T10:00:02.000000Z", "value": -1500.0, "category": "A"},
    ]
    assert http.get("/processed-data").json() == [
        {"category": "A", "avg_value": (42.5 - 1500) / 2, "count": 2, "last_timestamp": "2024-01-20T10:00:02.000000Z"},
        {"category": "sensor-7.b_x", "avg_value": 43.0, "count": 1, "last_timestamp": "2024-01-20T10:00:01.250000Z"},
    ]
    assert http.post("/readings", json=[]).json() == {"accepted": 0}


def test_every_bad_item_is_reported_by_index_and_nothing_is_stored(http: httpx.Client) -> None:
    good = {"timestamp": "2024-01-20T10:00:00Z", "value": 1.0, "category": "A"}
    body = [
        good,
        {**good, "timestamp": "yesterday"},
        {**good, "value": "1.5"},
        {**good, "category": "has space"},
        {**good, "category": "x" * 65},
        {**good, "value": True},
        good,
        {"timestamp": "2024-01-20T10:00:00Z", "value": 1.0},
        {**good, "extra": 1},
        {**good, "timestamp": "3000-01-01T00:00:00Z"},
        7,
    ]
    response = http.post("/readings", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(d["loc"], d["type"]) for d in detail] == [
        (["body", 1, "timestamp"], "timestamp_parsing"),
        (["body", 2, "value"], "float_type"),
        (["body", 3, "category"], "string_pattern_mismatch"),
        (["body", 4, "category"], "string_pattern_mismatch"),
        (["body", 5, "value"], "float_type"),
        (["body", 7, "category"], "missing"),
        (["body", 8, "extra"], "extra_forbidden"),
        (["body", 9, "timestamp"], "timestamp_range"),
        (["body", 10], "model_type"),
    ]
    assert all(d["msg"] for d in detail)
    assert total(http) == 0

    for raw in (
        b"[1e999]",
        b"not json",
        b"",
        b'[{"timestamp": "2024-01-20T10:00:00Z", "value": NaN, "category": "A"}]',
    ):
        response = http.post("/readings", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["type"] == "json_invalid"
    response = http.post("/readings", json={"timestamp": "2024-01-20T10:00:00Z", "value": 1, "category": "A"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert total(http) == 0


def test_size_limits_are_413(http: httpx.Client) -> None:
    item = {"timestamp": "2024-01-20T10:00:00Z", "value": 1.0, "category": "A"}
    response = http.post("/readings", json=[item] * 10_001)
    assert (response.status_code, response.json()) == (413, {"detail": "at most 10000 readings a request, got 10001"})
    assert http.post("/readings", json=[item] * 10_000).json() == {"accepted": 10_000}

    huge = json.dumps([{**item, "category": "A" * 64}] * 30_000).encode()
    assert len(huge) > 2 * 1024 * 1024
    response = http.post("/readings", content=huge, headers={"content-type": "application/json"})
    limit_message = {"detail": "the request body must be at most 2097152 bytes"}
    assert (response.status_code, response.json()) == (413, limit_message)

    def chunked():  # no Content-Length: the streamed bytes are counted
        for _ in range(3):
            yield b" " * (1024 * 1024)

    response = http.post("/readings", content=chunked(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert total(http) == 10_000


def test_the_largest_push_fits_the_ingestors_default_message_limit(http: httpx.Client) -> None:
    """10,000 readings, each with a 64-character category of its own, and the longest key: the
    columnar request to the ingestor is at its largest (840 KB), within INGESTOR_MAX_MESSAGE_BYTES."""
    body = [
        {"timestamp": f"2024-01-20T10:00:00.{i:06d}Z", "value": -1.2345678901234567e300, "category": f"{i:064d}"}
        for i in range(10_000)
    ]
    assert len(json.dumps(body)) < 2 * 1024 * 1024
    response = http.post("/readings", json=body, headers={"Idempotency-Key": "k" * 128})
    assert (response.status_code, response.json()) == (202, {"accepted": 10_000})
    assert total(http) == 10_000
    assert http.get("/raw-data", params={"category": f"{9_999:064d}"}).json() == [
        {"timestamp": "2024-01-20T10:00:00.009999Z", "value": -1.2345678901234567e300, "category": f"{9_999:064d}"}
    ]
