"""IngestorService: a thin mapping from RPCs to the store and the generator.

Validation failures become INVALID_ARGUMENT, a full category dictionary RESOURCE_EXHAUSTED, and an
unexpected error INTERNAL with a generic message: never UNKNOWN, never a traceback to the caller.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import grpc
import numpy as np

from ingestor.generator import Ingestion
from ingestor.intake import Intake, validate_batch_id
from ingestor.journal import JournalError
from ingestor.readings import InvalidArgument, decode_write_request
from ingestor.store import CategoryLimitError, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_CHUNK_SIZE = 65_536
MAX_CHUNK_SIZE = 131_072
_PAGE_TOKEN = struct.Struct("<Q")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _unary_errors(method: Handler) -> Handler:
    """Turn domain errors into status codes, and anything unexpected into INTERNAL (not UNKNOWN)."""

    @functools.wraps(method)
    async def wrapper(self: IngestorServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except InvalidArgument as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except CategoryLimitError as error:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except JournalError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the ingestor")

    return wrapper  # type: ignore[return-value]


def encode_page_token(before_seq: int) -> str:
    return base64.urlsafe_b64encode(_PAGE_TOKEN.pack(before_seq)).decode().rstrip("=")


def decode_page_token(token: str) -> int:
    """The sequence number a page token points below; InvalidArgument when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        (before_seq,) = _PAGE_TOKEN.unpack(raw)
    except (binascii.Error, struct.error, ValueError):
        raise InvalidArgument("page_token is not a token this service issued") from None
    return before_seq


def _reading_messages(store: ReadingStore, start: int, stop: int) -> list[pb.Reading]:
    columns = store.read(start, stop)
    names = store.categories
    seconds, nanos = np.divmod(columns.timestamps_ns, 1_000_000_000)
    return [
        pb.Reading(
            timestamp={"seconds": s, "nanos": n},
            value=v,
            category=names[c],
        )
        for s, n, v, c in zip(
            seconds.tolist(), nanos.tolist(), columns.values.tolist(), columns.codes.tolist(), strict=True
        )
    ]


class IngestorServicer(pb_grpc.IngestorServiceServicer):
    def __init__(self, store: ReadingStore, ingestion: Ingestion, intake: Intake | None = None) -> None:
        self._store = store
        self._ingestion = ingestion
        self._intake = intake or Intake(store)

    @_unary_errors
    async def StartIngestion(
        self, request: pb.StartIngestionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartIngestionResponse:
        started = self._ingestion.start()
        return pb.StartIngestionResponse(already_running=not started)

    @_unary_errors
    async def StopIngestion(
        self, request: pb.StopIngestionRequest, context: grpc.aio.ServicerContext
    ) -> pb.StopIngestionResponse:
        stopped = await self._ingestion.stop()
        return pb.StopIngestionResponse(already_stopped=not stopped)

    @_unary_errors
    async def GetStatus(self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext) -> pb.GetStatusResponse:
        store = self._store
        return pb.GetStatusResponse(
            running=self._ingestion.running,
            total_ingested=store.total_ingested,
            buffered=store.buffered,
            evicted=store.evicted,
            capacity=store.capacity,
            rate_hz=self._ingestion.rate_hz,
            durable=self._intake.durable,
            data_dir_bytes=self._intake.data_dir_bytes(),
            recovered=self._intake.recovered,
            remembered_batch_ids=self._intake.remembered_batch_ids,
        )

    @_unary_errors
    async def ListReadings(
        self, request: pb.ListReadingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReadingsResponse:
        if request.page_size < 0:
            raise InvalidArgument(f"page_size must not be negative, got {request.page_size}")
        page_size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        stop = self._store.total_ingested
        if request.page_token:
            stop = decode_page_token(request.page_token)
            if stop > self._store.total_ingested:
                raise InvalidArgument("page_token is not a token this service issued")
        start, stop = self._store.clamp(stop - page_size, stop)
        more = start > self._store.evicted
        return pb.ListReadingsResponse(
            readings=_reading_messages(self._store, start, stop),
            next_page_token=encode_page_token(start) if more else "",
        )

    async def ExportReadings(
        self, request: pb.ExportReadingsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportReadingsResponse]:
        chunk_size = request.chunk_size or DEFAULT_CHUNK_SIZE
        if chunk_size > MAX_CHUNK_SIZE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"chunk_size must be at most {MAX_CHUNK_SIZE}, got {chunk_size}",
            )
        try:
            for message in self._export_messages(request.max_readings, chunk_size):
                yield message
        except Exception:
            log.exception("ExportReadings failed")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error in the ingestor")

    def _export_messages(self, max_readings: int, chunk_size: int) -> Iterator[pb.ExportReadingsResponse]:
        """Chunks of the readings held when the export starts, built lazily so each is a fresh copy.

        Between two messages the generator may evict readings: those are skipped, never repeated.
        """
        store = self._store
        stop = store.total_ingested
        start = stop - max_readings if max_readings else 0
        sent_categories = 0
        while True:
            start, stop = store.clamp(start, stop)
            if start >= stop:
                return
            run = store.views(start, min(stop, start + chunk_size))[0]
            categories = store.categories
            yield pb.ExportReadingsResponse(
                columns=pb.ReadingColumns(
                    timestamps_ns=run.timestamps_ns.tobytes(),
                    values=run.values.tobytes(),
                    category_codes=run.codes.tobytes(),
                ),
                new_categories=categories[sent_categories:],
            )
            sent_categories = len(categories)
            start += len(run)

    @_unary_errors
    async def WriteReadings(
        self, request: pb.WriteReadingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.WriteReadingsResponse:
        if request.batch_id:
            validate_batch_id(request.batch_id)
        columns = decode_write_request(request, self._store)
        acknowledgement = await self._intake.write(columns, request.batch_id)
        return pb.WriteReadingsResponse(
            accepted=acknowledgement.accepted,
            duplicate=acknowledgement.duplicate,
            durable=acknowledgement.durable,
        )
