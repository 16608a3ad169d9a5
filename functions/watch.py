"""Live readings: each WatchReadings message as a batch of columns, and a call as a stream of batches."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np

from functions.errors import rpc_error
from functions.readings import Readings
from functions.sse import Batch, StreamFailed
from functions.wire import MalformedMessage
from ingestor.v1 import ingestor_pb2 as pb


def decode_watch(message: pb.WatchReadingsResponse) -> Batch:
    """The readings of a WatchReadingsResponse as columns, in either form; MalformedMessage when the
    columns do not fit together."""
    if message.HasField("columns"):
        columns = message.columns
        narrow = columns.WhichOneof("codes") == "category_codes_u8"
        try:
            timestamps_ns = np.frombuffer(columns.timestamps_ns, dtype="<i8")
            values = np.frombuffer(columns.values, dtype="<f8")
            codes = np.frombuffer(
                columns.category_codes_u8 if narrow else columns.category_codes, "u1" if narrow else "<u2"
            )
            sequences = np.frombuffer(columns.sequences, dtype="<u8") if columns.sequences else None
        except ValueError as error:
            raise MalformedMessage(str(error)) from None
        names = list(message.column_categories)
        if not len(timestamps_ns) == len(values) == len(codes):
            raise MalformedMessage("the columns have different lengths")
        if sequences is not None and len(sequences) != len(codes):
            raise MalformedMessage("the sequence numbers do not match the readings")
        if len(codes) and int(codes.max()) >= len(names):
            raise MalformedMessage("a category code is outside column_categories")
        late = np.frombuffer(columns.late, "u1") if columns.late else None
        if late is not None and len(late) != len(codes):
            raise MalformedMessage("the late flags do not match the readings")
        columnar = Readings(timestamps_ns, values, codes.astype(np.uint16), names, late)
        return Batch(columnar, message.missed, sequences)
    readings = message.readings
    names = list(dict.fromkeys(reading.category for reading in readings))
    index = {name: code for code, name in enumerate(names)}
    count = len(readings)
    rows = Readings(
        np.fromiter(
            (r.timestamp.seconds * 1_000_000_000 + r.timestamp.nanos for r in readings), dtype=np.int64, count=count
        ),
        np.fromiter((r.value for r in readings), dtype=np.float64, count=count),
        np.fromiter((index[r.category] for r in readings), dtype=np.uint16, count=count),
        names,
    )
    return Batch(rows, message.missed)


async def watch_batches(
    call: grpc.aio.UnaryStreamCall[pb.WatchReadingsRequest, pb.WatchReadingsResponse],
) -> AsyncIterator[Batch]:
    """The batches of a subscribed call, until it ends; a failure ends them with StreamFailed.
    Stopping the iteration cancels the call."""
    try:
        async for message in call:
            yield decode_watch(message)
    except grpc.aio.AioRpcError as error:
        raise StreamFailed(str(rpc_error(error, live=True))) from None
    except MalformedMessage as error:
        raise StreamFailed(f"the ingestor sent a malformed WatchReadings message: {error}") from None
    finally:
        call.cancel()
