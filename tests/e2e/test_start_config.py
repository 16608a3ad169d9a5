"""POST /start-ingestion with a configuration body: validation, conflicts, seeds, and what status reports."""

from __future__ import annotations

import time

import grpc
import httpx
import pytest

from devtools.processes import ServerProcess
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http


@pytest.fixture
def http(api_process: ServerProcess) -> httpx.Client:
    with api_http(api_process) as client:
        yield client


def run_for(http: httpx.Client, config: dict[str, object], seconds: float) -> None:
    response = http.post("/start-ingestion", json=config)
    assert (response.status_code, response.json()) == (200, {"message": "Data ingestion started"})
    time.sleep(seconds)
    assert http.post("/stop-ingestion").status_code == 200


def test_a_seed_makes_the_values_reproducible(http: httpx.Client) -> None:
    config = {"rate_hz": 500, "categories": ["north", "south", "x.1"], "seed": 1234}
    run_for(http, config, 0.3)
    first_run = http.get("/status").json()["total_ingested"]
    run_for(http, config, 0.3)
    raw = http.get("/raw-data", params={"limit": 10_000}).json()
    one, two = raw[:first_run], raw[first_run:]
    common = min(len(one), len(two))
    assert common >= 20
    assert [(r["value"], r["category"]) for r in one[:common]] == [(r["value"], r["category"]) for r in two[:common]]
    assert {r["category"] for r in raw} == {"north", "south", "x.1"}
    run_for(http, {**config, "seed": 99}, 0.3)
    three = http.get("/raw-data", params={"limit": 10_000}).json()[len(raw) :]
    assert [r["value"] for r in three[:common]] != [r["value"] for r in one[:common]]


def test_a_different_configuration_while_running_is_a_409(http: httpx.Client) -> None:
    config = {"rate_hz": 20, "categories": ["A", "B"], "seed": 5}
    assert http.post("/start-ingestion", json=config).json() == {"message": "Data ingestion started"}
    for same in (config, None, {}):  # an empty body is no configuration
        response = http.post("/start-ingestion", json=same)
        assert (response.status_code, response.json()) == (200, {"message": "Data ingestion already running"})
    for other in ({**config, "seed": 6}, {"rate_hz": 20}, {"categories": ["A", "B"], "rate_hz": 20}):
        response = http.post("/start-ingestion", json=other)
        assert response.status_code == 409
        assert "stop ingestion first" in response.json()["detail"]
    status = http.get("/status").json()
    assert status["running"] is True
    assert (status["rate_hz"], status["categories"], status["seed"]) == (20.0, ["A", "B"], 5)
    http.post("/stop-ingestion")
    # Stopped, it reports the last run's configuration; a start without a body goes back to the defaults.
    assert http.get("/status").json()["categories"] == ["A", "B"]
    assert http.post("/start-ingestion").json() == {"message": "Data ingestion started"}
    status = http.get("/status").json()
    assert "categories" not in status
    assert "seed" not in status
    assert status["rate_hz"] == 50.0  # the environment's default of this ingestor


BAD_CONFIGURATIONS = [
    ({"rate_hz": 0}, ["body", "rate_hz"]),
    ({"rate_hz": 1_000_001}, ["body", "rate_hz"]),
    ({"rate_hz": "fast"}, ["body", "rate_hz"]),
    ({"categories": []}, ["body", "categories"]),
    ({"categories": [f"c{i}" for i in range(65)]}, ["body", "categories"]),
    ({"categories": ["A", "has space"]}, ["body", "categories", 1]),
    ({"categories": ["A", "A"]}, ["body", "categories"]),
    ({"seed": 1.5}, ["body", "seed"]),
    ({"seed": "7"}, ["body", "seed"]),
    ({"seed": 2**63}, ["body", "seed"]),
    ({"rate": 5}, ["body", "rate"]),
]


def test_bad_configurations_are_422(http: httpx.Client) -> None:
    for body, loc in BAD_CONFIGURATIONS:
        response = http.post("/start-ingestion", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == loc
    assert http.get("/status").json()["running"] is False


def test_grpc_start_validates_and_reports_the_configuration(stub: pb_grpc.IngestorServiceStub) -> None:
    for request in (
        pb.StartIngestionRequest(rate_hz=0),
        pb.StartIngestionRequest(categories=["bad name"]),
        pb.StartIngestionRequest(categories=["A", "A"]),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            stub.StartIngestion(request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert stub.StartIngestion(pb.StartIngestionRequest(rate_hz=10, seed=3)).already_running is False
    with pytest.raises(grpc.RpcError) as caught:
        stub.StartIngestion(pb.StartIngestionRequest(rate_hz=11))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    status = stub.GetStatus(pb.GetStatusRequest())
    assert (status.rate_hz, list(status.categories), status.seed, status.configured) == (10.0, ["A", "B", "C"], 3, True)
    stub.StopIngestion(pb.StopIngestionRequest())
