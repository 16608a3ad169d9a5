"""A streamed export's messages as parts: readings with the stream's dictionary so far, or a file's
next bytes; and the check that a file export came as the file asked for."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import grpc

from functions.errors import IngestorFailed, rpc_error
from functions.readings import Readings
from functions.wire import MalformedMessage, decode_export_response
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
    first: bytes | None,
    rest: AsyncIterator[bytes],
    file_format: pb.ExportFormat = pb.EXPORT_FORMAT_UNSPECIFIED,
) -> AsyncGenerator[ExportPart, None]:
    categories: list[str] = []
    try:
        message = first
        while message is not None:
            chunk = decode_export_response(message)
            check_format(chunk.file_format, file_format)
            if file_format != pb.EXPORT_FORMAT_UNSPECIFIED:
                data = chunk.data if chunk.data is not None else memoryview(b"")
                yield ExportPart(Readings.empty(), chunk.planned_readings, data, chunk.data_readings)
            else:
                categories.extend(chunk.new_categories)
                readings = Readings(chunk.timestamps_ns, chunk.values, chunk.codes, tuple(categories), chunk.late)
                yield ExportPart(readings, chunk.planned_readings)
            message = await anext(rest, None)
    except grpc.aio.AioRpcError as error:
        raise rpc_error(error) from None
    except MalformedMessage as error:
        raise IngestorFailed(f"the ingestor sent a malformed ExportReadings message: {error}") from None
    finally:
        call.cancel()


def check_format(sent: int, asked: pb.ExportFormat) -> None:
    if sent != asked:
        raise IngestorFailed(
            f"the ingestor answered an export as {pb.ExportFormat.Name(sent)}, not as "
            f"{pb.ExportFormat.Name(asked)}: it is older than this function, upgrade it"
        )
