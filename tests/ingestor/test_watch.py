"""Live subscribers: bounded buffers (readings and bytes), counted misses, a subscriber that stops
reading at a high rate, the columnar form, the limit of subscribers, and stuck subscribers dropped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from devtools.processes import ThreadedIngestor
from devtools.waiting import wait_until
from ingestor.errors import ShuttingDown, TooManySubscribers
from ingestor.named_columns import NamedColumns, name_columns
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from ingestor.watch import Subscription, WatchHub
from tests.support.factories import MakeIngestor


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
            with pytest.raises(ShuttingDown):
                await waiting

    asyncio.run(scenario())


@pytest.mark.slow  # a second of generating at 200,000 readings/s
@pytest.mark.serial
def test_grpc_subscriber_that_stops_reading_at_a_high_rate(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=1_000_000, rate_hz=200_000, watch_buffer=5_000)
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
        wait_until(lambda: other["delivered"] + other["missed"] >= total_b, 30, "the filtered stream fell short")
        assert other["delivered"] + other["missed"] == total_b
        assert other["delivered"] > 0
        assert other["wrong"] == 0
        stuck.cancel()
        filtered.cancel()
        reader.join(timeout=10)
        assert other["cancelled"] == 1


def test_watch_rejects_bad_categories(stub: pb_grpc.IngestorServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        next(stub.WatchReadings(pb.WatchReadingsRequest(categories=["A", "not valid"]), timeout=5))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "categories[1]" in caught.value.details()


def names_of(piece: NamedColumns) -> list[str]:
    return [piece.names[code] for code in piece.codes.tolist()]


def test_each_buffer_is_bounded_in_bytes_and_what_does_not_fit_is_counted() -> None:
    async def scenario() -> None:
        store = ReadingStore(capacity=100_000)
        # 17 bytes a reading (int64, float64, one-byte code): room for exactly 1,000 readings.
        hub = WatchHub(store, buffer_readings=1_000_000, buffer_bytes=17 * 1000)
        with hub.subscribe() as stuck, hub.subscribe(frozenset({"B"})) as filtered:
            for batch in range(10):  # 3,000 readings, every other batch of category B
                append(store, [float(v) for v in range(batch * 300, batch * 300 + 300)], "AB"[batch % 2])
            assert (stuck.queued, stuck.queued_bytes) == (1000, 17_000)
            assert (filtered.queued, filtered.queued_bytes) == (1000, 17_000)
            delivery = await stuck.take()
            assert np.concatenate([c.values for c in delivery.batches]).tolist() == list(range(1000))
            assert delivery.missed == 2000
            delivery = await filtered.take()
            b_values = [float(v) for batch in range(1, 10, 2) for v in range(batch * 300, batch * 300 + 300)]
            assert np.concatenate([c.values for c in delivery.batches]).tolist() == b_values[:1000]
            assert delivery.missed == 500
            assert {name for piece in delivery.batches for name in names_of(piece)} == {"B"}

    asyncio.run(scenario())


def test_subscribers_beyond_the_limit_are_refused() -> None:
    hub = WatchHub(ReadingStore(capacity=10), buffer_readings=10, max_subscribers=2)
    with hub.subscribe(), hub.subscribe():
        with pytest.raises(TooManySubscribers, match="at most 2 live subscribers"), hub.subscribe():
            pass
        assert hub.subscribers == 2
    with hub.subscribe():
        assert hub.subscribers == 1


def test_pieces_carry_names_and_are_shared_by_subscribers_of_the_same_filter() -> None:
    async def scenario() -> None:
        store = ReadingStore(capacity=1000)
        store.encode_categories([f"c{i}" for i in range(300)])  # the store's codes are uint16 now
        hub = WatchHub(store, buffer_readings=10_000)
        with (
            hub.subscribe() as a,
            hub.subscribe() as b,
            hub.subscribe(frozenset({"c299"})) as c,
            hub.subscribe(frozenset({"c299", "nothing"})) as d,
            hub.subscribe(frozenset({"c299"})) as e,
        ):
            codes = store.encode_categories(["c5", "c299", "c5"])
            store.append(Columns(np.arange(3, dtype=np.int64), np.array([1.0, 2.0, 3.0]), codes))
            (pa,), (pb_,), (pc,), (pd,), (pe,) = [(await s.take()).batches for s in (a, b, c, d, e)]
            assert names_of(pa) == ["c5", "c299", "c5"]
            assert pa.codes.dtype == np.uint8  # two names: one byte a code, whatever the store's width
            assert (names_of(pc), pc.values.tolist()) == (["c299"], [2.0])
            assert names_of(pd) == ["c299"]
            # One copy of the readings per distinct filter.
            assert pb_ is pa
            assert pe is pc

    asyncio.run(scenario())


def test_a_large_batch_is_cut_into_pieces_that_do_not_keep_it_alive() -> None:
    async def scenario() -> None:
        store = ReadingStore(capacity=100_000)
        hub = WatchHub(store, buffer_readings=100_000, buffer_bytes=10**9)
        with hub.subscribe() as subscription:
            values = np.arange(10_000, dtype=np.float64)
            batch = weakref.ref(values)
            store.append(Columns(np.arange(10_000, dtype=np.int64), values, store.encode_categories(["A"] * 10_000)))
            del values
            gc.collect()
            assert batch() is None  # the subscriber holds copies of its pieces, not the whole batch
            sizes = []
            while subscription.queued:
                delivery = await subscription.take(4096)
                sizes.append(sum(len(piece) for piece in delivery.batches))
            assert sizes == [4096, 4096, 1808]

    asyncio.run(scenario())


def test_a_delivery_says_how_long_its_oldest_reading_waited() -> None:
    async def scenario() -> None:
        now = [100.0]
        subscription = Subscription(frozenset(), capacity=5, clock=lambda: now[0])
        piece = name_columns(Columns(np.arange(4, dtype=np.int64), np.zeros(4), np.zeros(4, np.uint8)), ["A"])
        subscription.offer([piece])
        now[0] = 101.0
        subscription.offer([piece])  # one fits, three are missed from now on
        now[0] = 107.5
        delivery = await subscription.take(4)
        assert (len(delivery), delivery.missed, delivery.waited_s) == (4, 0, 7.5)
        delivery = await subscription.take(4)
        assert (len(delivery), delivery.missed, delivery.waited_s) == (1, 3, 6.5)

    asyncio.run(scenario())


def read_watch(call: grpc.Call, until: int) -> tuple[list[tuple[int, float, str]], int]:
    """(timestamp ns, value, category) of each reading delivered, and how many were missed."""
    readings: list[tuple[int, float, str]] = []
    missed = 0
    for message in call:
        if message.HasField("columns"):
            columns = message.columns
            codes = np.frombuffer(columns.category_codes_u8, np.uint8) if columns.category_codes_u8 else []
            readings += zip(
                np.frombuffer(columns.timestamps_ns, "<i8").tolist(),
                np.frombuffer(columns.values, "<f8").tolist(),
                [message.column_categories[code] for code in codes],
                strict=True,
            )
        readings += [
            (r.timestamp.seconds * 1_000_000_000 + r.timestamp.nanos, r.value, r.category) for r in message.readings
        ]
        missed += message.missed
        if len(readings) + missed >= until:
            break
    return readings, missed


def test_the_columnar_form_carries_what_the_message_form_does(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=1_000_000, rate_hz=20_000, watch_buffer=1_000_000)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        calls = {
            "messages": stub.WatchReadings(pb.WatchReadingsRequest(), timeout=60),
            "columns": stub.WatchReadings(pb.WatchReadingsRequest(columnar=True), timeout=60),
            "columns of B": stub.WatchReadings(pb.WatchReadingsRequest(categories=["B"], columnar=True), timeout=60),
        }
        for call in calls.values():
            call.initial_metadata()
        before = stub.GetStatus(pb.GetStatusRequest()).total_ingested
        stub.StartIngestion(pb.StartIngestionRequest(categories=["A", "B"], seed=3))
        time.sleep(0.5)
        stub.StopIngestion(pb.StopIngestionRequest())
        after = stub.GetStatus(pb.GetStatusRequest()).total_ingested
        stored = server.running.store.read(before, after)
        names = server.running.store.categories
        expected = list(
            zip(stored.timestamps_ns.tolist(), stored.values.tolist(), [names[c] for c in stored.codes], strict=True)
        )
        assert len(expected) > 5000
        got = {name: read_watch(call, until=after - before) for name, call in list(calls.items())[:2]}
        assert got["messages"] == got["columns"] == (expected, 0)
        only_b = [reading for reading in expected if reading[2] == "B"]
        assert read_watch(calls["columns of B"], until=len(only_b)) == (only_b, 0)
        for call in calls.values():
            call.cancel()


def test_subscribers_beyond_max_subscribers_are_resource_exhausted(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=1000, max_subscribers=2)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        first, second = (stub.WatchReadings(pb.WatchReadingsRequest(), timeout=30) for _ in range(2))
        first.initial_metadata()
        second.initial_metadata()
        with pytest.raises(grpc.RpcError) as caught:
            next(stub.WatchReadings(pb.WatchReadingsRequest(), timeout=5))
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert caught.value.details() == "the ingestor serves at most 2 live subscribers: try again later"
        second.cancel()
        wait_until(lambda: server.running.hub.subscribers <= 1, 10, "the cancelled subscriber stayed")  # type: ignore[union-attr]
        third = stub.WatchReadings(pb.WatchReadingsRequest(), timeout=30)
        third.initial_metadata()
        assert server.running.hub.subscribers == 2  # type: ignore[union-attr]
        first.cancel()
        third.cancel()


# A client whose receive window does not grow: unread messages stop the server's writes at 64 KiB.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


@contextlib.contextmanager
def watching_through_a_small_window(server: ThreadedIngestor) -> Iterator[tuple[pb_grpc.IngestorServiceStub, Any]]:
    """A stub on an ordinary channel, and a subscription (already made) on a channel of SMALL_WINDOW."""
    with (
        grpc.insecure_channel(server.address) as channel,
        grpc.insecure_channel(server.address, options=SMALL_WINDOW) as small_channel,
    ):
        call = pb_grpc.IngestorServiceStub(small_channel).WatchReadings(pb.WatchReadingsRequest(), timeout=60)
        call.initial_metadata()
        yield pb_grpc.IngestorServiceStub(channel), call


@pytest.mark.slow  # waits out the stall limit
@pytest.mark.serial
def test_a_subscriber_that_takes_nothing_is_dropped_after_the_stall_limit(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=1_000_000, rate_hz=200_000, watch_stall_s=1)
    with watching_through_a_small_window(server) as (stub, stuck):
        hub = server.running.hub
        assert hub is not None
        assert hub.subscribers == 1
        stub.StartIngestion(pb.StartIngestionRequest())
        started = time.monotonic()
        wait_until(lambda: hub.subscribers == 0, 10, "the stuck subscriber was not dropped")
        dropped_after = time.monotonic() - started
        stub.StopIngestion(pb.StopIngestionRequest())
        assert hub.subscribers == 0  # unsubscribed, its buffer released
        assert 1.0 <= dropped_after < 4.0
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stuck:  # what was sent before the drop, then the status
                pass
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert re.fullmatch(
            r"this stream took no readings for 1 s and ends: it lost \d+ readings after its last message",
            caught.value.details(),
        )


def read_slowly(call: grpc.Call, messages: list[pb.WatchReadingsResponse]) -> None:
    for message in call:
        messages.append(message)
        time.sleep(0.3)


@pytest.mark.slow  # waits out the stall limit
def test_a_subscriber_that_stays_behind_is_told_what_it_lost_and_dropped(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=1_000_000, rate_hz=100_000, watch_buffer=60_000, watch_stall_s=1)
    with watching_through_a_small_window(server) as (stub, slow):
        before = stub.GetStatus(pb.GetStatusRequest()).total_ingested
        stub.StartIngestion(pb.StartIngestionRequest())
        messages: list[pb.WatchReadingsResponse] = []
        with pytest.raises(grpc.RpcError) as caught:
            read_slowly(slow, messages)  # 15 messages of the buffer would take 4.5 s
        stub.StopIngestion(pb.StopIngestionRequest())
        produced = stub.GetStatus(pb.GetStatusRequest()).total_ingested - before
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        found = re.fullmatch(
            r"this stream fell (\d+) s behind \(the limit is 1 s\) and ends: "
            r"its last message counts the (\d+) readings it lost",
            caught.value.details(),
        )
        assert found is not None, caught.value.details()
        assert int(found[1]) >= 1
        assert messages[-1].readings == []
        assert messages[-1].missed == int(found[2]) > 0
        delivered = sum(len(message.readings) for message in messages)
        missed = sum(message.missed for message in messages)
        assert 0 < delivered < produced
        assert delivered + missed <= produced  # readings after the drop are nobody's
        assert server.running.hub.subscribers == 0  # type: ignore[union-attr]


def test_subscribers_get_the_names_of_readings_a_batch_skips() -> None:
    async def scenario() -> None:
        store = ReadingStore(capacity=10)
        hub = WatchHub(store, buffer_readings=100)
        with hub.subscribe() as subscription:
            # 20 readings into a buffer of 10: the first 10 are stored and evicted at once, and
            # "only-skipped" is held by no reading afterwards.
            names = ["only-skipped"] * 10 + ["A"] * 10
            codes = store.encode_categories(names)
            store.append(Columns(np.arange(20, dtype=np.int64), np.arange(20, dtype=np.float64), codes))
            assert "only-skipped" not in store.categories  # dropped from the dictionary
            delivery = await subscription.take()
            assert [name for piece in delivery.batches for name in names_of(piece)] == names

    asyncio.run(scenario())
