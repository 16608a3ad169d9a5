"""Concurrent start/stop storms over HTTP and gRPC, and exact accounting under concurrent writes."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from functions.wire import decode_export
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor
from tests.support.inprocess import api_client

pytestmark = pytest.mark.anyio

T0 = 1_705_744_800
STORM_CONNECT_S = 10
"""Hundreds of calls start at once on this process's one loop, which serves the ingestor too: on a
busy machine the channel may take longer than the default second to connect, a 503 that is not
what these tests are about."""


async def _live_generator_tasks() -> int:
    return sum(1 for task in asyncio.all_tasks() if task.get_name() == "generator" and not task.done())


async def _grows(stub: pb_grpc.IngestorServiceStub, wait_s: float = 0.3) -> bool:
    first = (await stub.GetStatus(pb.GetStatusRequest(), timeout=5)).total_ingested
    await asyncio.sleep(wait_s)
    return (await stub.GetStatus(pb.GetStatusRequest(), timeout=5)).total_ingested > first


@pytest.mark.slow  # a storm of 300 calls
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_start_stop_storm_leaves_one_or_no_generator_and_a_truthful_status(
    seed: int, make_ingestor: MakeIngestor
) -> None:
    ingestor = make_ingestor(capacity=100_000, rate_hz=1000)
    rng = random.Random(seed)
    async with (
        api_client(ingestor_address=ingestor.address, ingestor_connect_timeout_s=STORM_CONNECT_S) as http,
        grpc.aio.insecure_channel(ingestor.address) as channel,
    ):
        stub = pb_grpc.IngestorServiceStub(channel)
        storm = [
            rng.choice(
                [
                    lambda: http.post("/start-ingestion"),
                    lambda: http.post("/stop-ingestion"),
                    lambda: stub.StartIngestion(pb.StartIngestionRequest(), timeout=10),
                    lambda: stub.StopIngestion(pb.StopIngestionRequest(), timeout=10),
                ]
            )()
            for _ in range(300)
        ]
        results = await asyncio.gather(*storm)
        for result in results:
            if hasattr(result, "status_code"):
                assert result.status_code == 200

        live = ingestor.call(_live_generator_tasks())
        status = await stub.GetStatus(pb.GetStatusRequest(), timeout=5)
        http_status = (await http.get("/status")).json()
        assert live in (0, 1)
        assert status.running is (live == 1)
        assert http_status["running"] is status.running
        # The status tells the truth: readings arrive if and only if it says running.
        assert await _grows(stub) is status.running
        assert status.total_ingested == status.buffered + status.evicted

        # And it still obeys afterwards.
        await stub.StopIngestion(pb.StopIngestionRequest(), timeout=5)
        assert ingestor.call(_live_generator_tasks()) == 0
        assert await _grows(stub) is False
        assert (await http.post("/start-ingestion")).json() == {"message": "Data ingestion started"}
        assert ingestor.call(_live_generator_tasks()) == 1
        assert await _grows(stub) is True


@pytest.mark.parametrize("capacity", [1_000_000, 2_000])
async def test_accounting_is_exact_while_generating_and_pushing(capacity: int, make_ingestor: MakeIngestor) -> None:
    ingestor = make_ingestor(capacity=capacity, rate_hz=5000)
    batches, per_batch = 40, 50
    async with (
        api_client(ingestor_address=ingestor.address, ingestor_connect_timeout_s=STORM_CONNECT_S) as http,
        grpc.aio.insecure_channel(ingestor.address) as channel,
    ):
        stub = pb_grpc.IngestorServiceStub(channel)
        assert (await http.post("/start-ingestion")).status_code == 200

        async def push(batch: int) -> int:
            readings = [
                pb.Reading(timestamp={"seconds": T0 + batch, "nanos": i}, value=batch * 1000 + i, category="pushed")
                for i in range(per_batch)
            ]
            response = await stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=10)
            await asyncio.sleep(0.01)
            return response.accepted

        accepted = sum(await asyncio.gather(*(push(batch) for batch in range(batches))))
        await asyncio.sleep(0.2)
        assert (await http.post("/stop-ingestion")).status_code == 200

        status = (await http.get("/status")).json()
        assert accepted == batches * per_batch
        assert status["total_ingested"] == status["buffered"] + status["evicted"]
        assert status["buffered"] == min(status["total_ingested"], capacity)

        exported = decode_export([message async for message in stub.ExportReadings(pb.ExportReadingsRequest())])
        assert len(exported) == status["buffered"]
        processed = (await http.get("/processed-data")).json()
        assert sum(row["count"] for row in processed) == status["buffered"]

        names = list(exported.categories)
        # A category none of whose readings is held any more is not in the dictionary either.
        pushed_code = names.index("pushed") if "pushed" in names else -1
        pushed = exported.values[exported.codes == pushed_code]
        if status["evicted"] == 0:
            # Every pushed reading is there, once, and the rest came from the generator.
            expected = sorted(batch * 1000 + i for batch in range(batches) for i in range(per_batch))
            assert sorted(pushed.tolist()) == expected
            assert status["total_ingested"] == accepted + int((exported.codes != pushed_code).sum())
        else:
            assert status["buffered"] == capacity
            assert len(set(pushed.tolist())) == len(pushed)  # evicted or present, never repeated


async def test_evictions_are_counted_as_they_happen_not_derived(make_ingestor: MakeIngestor) -> None:
    # The test keeps its own record of what it pushed; /status must agree with it after every push,
    # and the buffer must hold exactly the newest `capacity` of the pushed readings.
    capacity, pushed = 1000, []
    sizes = random.Random(5).choices(range(1, 400), k=12)
    ingestor = make_ingestor(capacity=capacity)
    async with api_client(ingestor_address=ingestor.address, ingestor_connect_timeout_s=STORM_CONNECT_S) as http:
        for size in sizes:
            values = list(range(len(pushed), len(pushed) + size))
            body = [{"timestamp": "2024-01-20T10:00:00Z", "value": v, "category": f"k{v % 3}"} for v in values]
            assert (await http.post("/readings", json=body)).status_code == 202
            pushed.extend(values)
            status = (await http.get("/status")).json()
            expected_evicted = max(0, len(pushed) - capacity)
            assert (status["total_ingested"], status["buffered"], status["evicted"]) == (
                len(pushed),
                len(pushed) - expected_evicted,
                expected_evicted,
            )
        held = (await http.get("/raw-data", params={"limit": capacity})).json()
        assert [reading["value"] for reading in held] == pushed[-capacity:]
