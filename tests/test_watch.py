"""Live subscribers: bounded buffers, counted misses, and a subscriber that stops reading at a high rate."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest

from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from ingestor.watch import Closed, WatchHub
from tests.harness import ThreadedIngestor


def append(store: ReadingStore, values: list[float], category: str = "A") -> None:
    n = len(values)
    store.append(Columns(np.arange(n, dtype=np.int64), np.array(values), store.encode_categories([category] * n)))


def test_a_stuck_subscriber_loses_only_its_own_readings_and_learns_how_many() -> None:
    async def scenario() -> None:
        store = ReadingStore(capacity=1000)
        hub = WatchHub(store, buffer_readings=10)
        with hub.subscribe() as stuck, hub.subscribe() as reader:
            for batch in range(5):
                append(store, [batch * 4 + i for i in range(4)])  # 20 readings in batches of 4
                delivery = await reader.take()
                assert [c.values.tolist() for c in delivery.batches] == [[batch * 4 + i for i in range(4)]]
                assert delivery.missed == 0
            assert stuck.queued == 10  # bounded: the rest was dropped, not queued
            delivery = await stuck.take()
            assert np.concatenate([c.values for c in delivery.batches]).tolist() == list(range(10))
            assert delivery.missed == 10
            append(store, [99.0])
            delivery = await stuck.take()  # caught up: no gap any more
            assert ([c.values.tolist() for c in delivery.batches], delivery.missed) == ([[99.0]], 0)
        assert hub.subscribers == 0

    asyncio.run(scenario())


def test_category_filter_and_close() -> None:
    async def scenario() -> None:
        store = ReadingStore(capacity=100)
        hub = WatchHub(store, buffer_readings=100)
        with hub.subscribe(frozenset({"B", "later"})) as subscription:
            append(store, [1.0, 2.0], "A")
            append(store, [3.0], "B")
            append(store, [4.0], "later")  # a category that did not exist when subscribing
            delivery = await subscription.take()
            assert [c.values.tolist() for c in delivery.batches] == [[3.0], [4.0]]
            waiting = asyncio.ensure_future(subscription.take())
            await asyncio.sleep(0)
            hub.close()
            with pytest.raises(Closed):
                await waiting

    asyncio.run(scenario())


def test_grpc_subscriber_that_stops_reading_at_a_high_rate() -> None:
    server = ThreadedIngestor(capacity=1_000_000, rate_hz=200_000, watch_buffer=5_000)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            stuck = stub.WatchReadings(pb.WatchReadingsRequest(), timeout=60)
            stuck.initial_metadata()  # subscribed
            filtered = stub.WatchReadings(pb.WatchReadingsRequest(categories=["B"]), timeout=60)
            filtered.initial_metadata()
            other: dict[str, int] = {"delivered": 0, "missed": 0, "wrong": 0}

            def read_other() -> None:
                try:
                    for message in filtered:
                        other["wrong"] += sum(r.category != "B" for r in message.readings)
                        other["delivered"] += len(message.readings)
                        other["missed"] += message.missed
                except grpc.RpcError as error:  # cancelled at the end of the test
                    other["cancelled"] = int(error.code() is grpc.StatusCode.CANCELLED)

            before = stub.GetStatus(pb.GetStatusRequest()).total_ingested
            started = time.monotonic()
            stub.StartIngestion(pb.StartIngestionRequest(categories=["A", "B"], seed=1))
            reader = threading.Thread(target=read_other, daemon=True)
            reader.start()
            time.sleep(1.0)  # `stuck` reads nothing meanwhile
            stub.StopIngestion(pb.StopIngestionRequest())
            elapsed = time.monotonic() - started
            after = stub.GetStatus(pb.GetStatusRequest()).total_ingested
            produced = after - before
            # Ingestion kept its schedule: a stuck subscriber does not slow it down (generous bound).
            assert produced >= 200_000 * 0.5 * elapsed
            exported = server.running.store.read(before, after)
            codes = server.running.store.encode_categories(["B"])
            total_b = int(np.count_nonzero(exported.codes == codes[0]))

            delivered = missed = 0
            for message in stuck:
                delivered += len(message.readings)
                missed += message.missed
                if delivered + missed >= produced:
                    break
            assert delivered + missed == produced  # every reading is either delivered or counted
            assert missed > 0
            assert delivered < produced
            deadline = time.monotonic() + 30
            while other["delivered"] + other["missed"] < total_b and time.monotonic() < deadline:
                time.sleep(0.05)
            assert other["delivered"] + other["missed"] == total_b
            assert other["delivered"] > 0
            assert other["wrong"] == 0
            stuck.cancel()
            filtered.cancel()
            reader.join(timeout=10)
            assert other["cancelled"] == 1
    finally:
        server.close()


def test_watch_rejects_bad_categories(stub: pb_grpc.IngestorServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        next(stub.WatchReadings(pb.WatchReadingsRequest(categories=["A", "not valid"]), timeout=5))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "categories[1]" in caught.value.details()
