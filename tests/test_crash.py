"""kill -9 the durable ingestor at random moments: every acknowledged reading comes back, exactly once."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from functions.client import decode_export
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.harness import ServerProcess, start_ingestor_process

KILLS = 5
BATCH_SPAN = 1000
"""Written batch k carries the values k * BATCH_SPAN + 0, 1, 2, ...: each value names its batch."""
T0_NS = 1_705_744_800 * 1_000_000_000


def written_batch(k: int, count: int) -> pb.WriteReadingsRequest:
    values = k * BATCH_SPAN + np.arange(count, dtype="<f8")
    return pb.WriteReadingsRequest(
        columns=pb.ReadingColumns(
            timestamps_ns=(T0_NS + values.astype("<i8")).tobytes(),
            values=values.tobytes(),
            category_codes=np.zeros(count, dtype="<u2").tobytes(),
        ),
        column_categories=["W"],
        batch_id=f"crash-test-{k}",
    )


@dataclass
class Producer:
    """Writes batches one after another until the ingestor goes away; remembers what was acknowledged."""

    first_k: int
    rng: random.Random
    sizes: dict[int, int] = field(default_factory=dict)
    acknowledged: set[int] = field(default_factory=set)
    in_flight: int | None = None
    first_ack: threading.Event = field(default_factory=threading.Event)

    def run(self, address: str) -> None:
        k = self.first_k
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            while True:
                self.sizes[k] = self.rng.randint(1, 500)
                self.in_flight = k
                try:
                    response = stub.WriteReadings(written_batch(k, self.sizes[k]), timeout=10)
                except grpc.RpcError:
                    return  # killed: batch k is the one in flight
                assert (response.accepted, response.duplicate, response.durable) == (self.sizes[k], False, True)
                self.acknowledged.add(k)
                self.in_flight = None
                self.first_ack.set()
                k += 1


def start(data_dir: Path) -> ServerProcess:
    return start_ingestor_process(capacity=1_000_000, rate_hz=2000, data_dir=data_dir)


def export(address: str) -> tuple[np.ndarray, np.ndarray, list[str], pb.GetStatusResponse]:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        status = stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        readings = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(), timeout=30))
    return readings.values, readings.timestamps_ns, [readings.categories[c] for c in readings.codes.tolist()], status


def test_every_acknowledged_reading_survives_kill_9_exactly_once(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    sizes: dict[int, int] = {}
    acknowledged: set[int] = set()
    generated_before = 0
    process = start(data_dir)
    try:
        for kill in range(KILLS):
            with grpc.insecure_channel(process.address) as channel:
                pb_grpc.IngestorServiceStub(channel).StartIngestion(pb.StartIngestionRequest(), timeout=10)
            producer = Producer(first_k=kill * 100_000, rng=rng)
            writer = threading.Thread(target=producer.run, args=(process.address,), daemon=True)
            writer.start()
            assert producer.first_ack.wait(20), f"no batch acknowledged (seed {seed})\n{''.join(process.output)}"
            time.sleep(rng.uniform(0.05, 0.8))
            process.stop(signal.SIGKILL)
            writer.join(timeout=20)
            assert not writer.is_alive()
            sizes.update(producer.sizes)
            acknowledged |= producer.acknowledged

            process = start(data_dir)
            values, timestamps, categories, status = export(process.address)
            where = f"(kill {kill}, seed {seed}, {len(producer.acknowledged)} acknowledged this round)"
            assert status.total_ingested == status.buffered + status.evicted == len(values), where
            assert status.evicted == 0
            assert status.recovered == len(values)

            written = values[np.array(categories) == "W"]
            per_batch = Counter((written // BATCH_SPAN).astype(int).tolist())
            assert len(set(written.tolist())) == len(written), f"a written reading came back twice {where}"
            for k in acknowledged:
                assert per_batch.get(k) == sizes[k], f"acknowledged batch {k} did not come back whole {where}"
            unacknowledged = set(per_batch) - acknowledged
            assert unacknowledged <= {producer.in_flight}, f"{unacknowledged} were never sent {where}"
            for k in unacknowledged:
                assert per_batch[k] == sizes[k], f"batch {k} came back in part {where}"

            # Generated readings: each exactly once, in the order generated, none lost from before.
            generated = timestamps[np.array(categories) != "W"]
            assert len(set(generated.tolist())) == len(generated), where
            assert np.all(np.diff(generated) > 0), where
            assert len(generated) >= generated_before, where
            generated_before = len(generated)

            # The producer retries the batch that was in flight: stored now or recognised, never twice.
            if producer.in_flight is not None:
                k = producer.in_flight
                with grpc.insecure_channel(process.address) as channel:
                    retry = pb_grpc.IngestorServiceStub(channel).WriteReadings(written_batch(k, sizes[k]), timeout=10)
                assert (retry.accepted, retry.duplicate) == (sizes[k], k in per_batch), where
                acknowledged.add(k)
                values, _, categories, status = export(process.address)
                written = values[np.array(categories) == "W"]
                assert Counter((written // BATCH_SPAN).astype(int).tolist())[k] == sizes[k], where
        assert len(acknowledged) >= KILLS
    finally:
        process.stop()
