"""The function's client reading a large buffer: many chunks, decoded as they arrive."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np

from functions.client import EXPORT_CHUNK_SIZE, IngestorClient
from functions.readings import Readings
from functions.settings import FunctionSettings
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor


def write_columns(stub: pb_grpc.IngestorServiceStub, start: int, n: int, categories: list[str]) -> None:
    columns = pb.ReadingColumns(
        timestamps_ns=np.arange(start, start + n, dtype="<i8").tobytes(),
        values=(np.arange(start, start + n) / 4).astype("<f8").tobytes(),
        category_codes=(np.arange(start, start + n) % len(categories)).astype("<u2").tobytes(),
    )
    stub.WriteReadings(pb.WriteReadingsRequest(columns=columns, column_categories=categories), timeout=10)


def export(address: str, max_readings: int = 0) -> Readings:
    client = IngestorClient(FunctionSettings(ingestor_address=address))
    return asyncio.run(client.export_readings(max_readings))


def test_a_buffer_of_several_chunks_arrives_whole_and_in_order(make_ingestor: MakeIngestor) -> None:
    n = 3 * EXPORT_CHUNK_SIZE + 123
    ingestor = make_ingestor(capacity=n)
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        # A category first seen late in the buffer reaches the client with a later chunk.
        write_columns(stub, 0, n - 10, ["A", "B"])
        write_columns(stub, n - 10, 10, ["late"])
    readings = export(ingestor.address)
    newest = export(ingestor.address, max_readings=5)
    assert len(readings) == n
    assert readings.timestamps_ns.tolist() == list(range(n))
    assert readings.values.tolist() == (np.arange(n) / 4).tolist()
    names = [readings.categories[code] for code in readings.codes.tolist()]
    assert names == ["AB"[i % 2] for i in range(n - 10)] + ["late"] * 10
    assert newest.timestamps_ns.tolist() == list(range(n - 5, n))
    assert [newest.categories[code] for code in newest.codes.tolist()] == ["late"] * 5
