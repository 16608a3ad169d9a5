"""Durable rollups: kill -9 while readings are written, restart on the same data directory; the
rollups count exactly the readings the journal kept, none lost, none twice, and go on from there."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import grpc

from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.ingestor.test_rollups import T0_NS, assert_same, history, random_readings, reference, write
from tests.support.factories import MakeProcess

BATCH = 250


def test_kill_9_while_writing_then_restart_counts_each_kept_reading_once(
    make_ingestor_process: MakeProcess, tmp_path: Path
) -> None:
    readings = random_readings(random.Random(9), 200 * BATCH, T0_NS, 120)
    settings = {"capacity": 1000, "data_dir": tmp_path / "data"}
    first = make_ingestor_process(**settings)
    sent = 0

    def produce() -> None:
        nonlocal sent
        with grpc.insecure_channel(first.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            for start in range(0, len(readings), BATCH):
                try:
                    write(stub, readings[start : start + BATCH])
                except grpc.RpcError:
                    return
                sent = start + BATCH

    producer = threading.Thread(target=produce)
    producer.start()
    while sent < 40 * BATCH:
        time.sleep(0.01)
    first.stop(signal.SIGKILL)
    producer.join()
    assert sent < len(readings), "every batch went through before the kill: nothing was in flight"

    second = make_ingestor_process(**settings)
    with grpc.insecure_channel(second.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        kept = stub.GetStatus(pb.GetStatusRequest()).total_ingested
        # One producer, batches in order, each all or nothing: the journal kept the first `kept`.
        assert sent <= kept <= sent + BATCH
        assert kept % BATCH == 0
        assert_same(history(stub), reference(readings[:kept]))
        write(stub, readings[kept : kept + 20 * BATCH])
        assert_same(history(stub), reference(readings[: kept + 20 * BATCH]))
    second.stop()  # a clean stop, then one more start: still each reading once
    third = make_ingestor_process(**settings)
    with grpc.insecure_channel(third.address) as channel:
        assert_same(history(pb_grpc.IngestorServiceStub(channel)), reference(readings[: kept + 20 * BATCH]))
