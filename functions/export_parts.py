"""A streamed export's messages as parts: readings with the stream's dictionary so far, or a file's
next bytes; and the check that a file export came as the file asked for."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import grpc

from functions.errors import IngestorFailed, rpc_error
from functions.readings import Readings
from functions.wire import ExportChunk, MalformedMessage, decode_export_response
from ingestor.v1 import ingestor_pb2 as pb


@dataclass(frozen=True, slots=True)
class ExportPart:
    """One chunk of a streamed export: its readings, with the stream's dictionary so far; or, of a
    file export, the file's next bytes and how many readings they hold."""

    readings: Readings
    planned: int
    """How many readings the whole export carries at most (from the first message; 0 after it)."""
    data: memoryview | None = None
    data_readings: int = 0

    @property
    def count(self) -> int:
        """The readings this part adds."""
        return self.data_readings if self.data is not None else len(self.readings)


async def export_parts(
    call: grpc.aio.UnaryStreamCall[pb.ExportReadingsRequest, bytes],
    first: ExportChunk | None,
    rest: AsyncIterator[bytes],
    file_format: pb.ExportFormat = pb.EXPORT_FORMAT_UNSPECIFIED,
) -> AsyncGenerator[ExportPart, None]:
    """The parts of an export whose first message is ``first`` (read with :func:`read_message`)."""
    categories: list[str] = []
    try:
        chunk = first
        while chunk is not None:
            if file_format != pb.EXPORT_FORMAT_UNSPECIFIED:
                data = chunk.data if chunk.data is not None else memoryview(b"")
                yield ExportPart(Readings.empty(), chunk.planned_readings, data, chunk.data_readings)
            else:
                categories.extend(chunk.new_categories)
                readings = Readings(chunk.timestamps_ns, chunk.values, chunk.codes, tuple(categories), chunk.late)
                yield ExportPart(readings, chunk.planned_readings)
            message = await anext(rest, None)
            chunk = None if message is None else read_message(message, file_format)
    except grpc.aio.AioRpcError as error:
        raise rpc_error(error) from None
    finally:
        call.cancel()


def read_message(message: bytes, file_format: pb.ExportFormat) -> ExportChunk:
    """One ExportReadings message, in the format asked for; IngestorFailed when it is malformed or
    in another format (an ingestor older than the format field sends columns)."""
    try:
        chunk = decode_export_response(message)
    except MalformedMessage as error:
        raise IngestorFailed(f"the ingestor sent a malformed ExportReadings message: {error}") from None
    if chunk.file_format != file_format:
        raise IngestorFailed(
            f"the ingestor answered an export as {pb.ExportFormat.Name(chunk.file_format)}, not as "
            f"{pb.ExportFormat.Name(file_format)}: it is older than this function, upgrade it"
        )
    return chunk
