"""ExportReadings' messages: the readings an export selects, in chunks encoded as they are sent.

The selection is made when the export starts; each chunk is copied out of the ring only when its
message is about to be sent, so readings the generator evicts in between are skipped, never
repeated. A chunk goes out as columns, or as the next row group of a Parquet file
(``ingestor/parquet_stream.py``) or the next lines of a CSV file (``ingestor/csv_text.py``) when
the export asks for one. Knows nothing of gRPC: the messages
are bytes (``ingestor/wire.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import numpy as np

from ingestor.categories import StreamDictionary
from ingestor.csv_text import HEADER, csv_chunk
from ingestor.parquet_stream import ParquetStream
from ingestor.query import ReadingFilter, gather, held, select_page
from ingestor.store import Columns, ReadingStore
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.wire import encode_export_data, encode_export_response


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """What an export asks for: the readings that match, within sequence bounds, newest or oldest."""

    chunk_size: int
    """Readings per message at most."""
    flt: ReadingFilter = field(default_factory=ReadingFilter)
    max_readings: int = 0
    """The newest (or, with ``oldest_first``, the oldest) this many matches; 0 for all of them."""
    after_seq: int | None = None
    before_seq: int | None = None
    oldest_first: bool = False
    late_flags: bool = False
    """Whether each chunk carries the readings' late flags."""
    file_format: int = pb.EXPORT_FORMAT_UNSPECIFIED
    """An ``ExportFormat``: columns, or one file."""

    @property
    def fits_one_message(self) -> bool:
        """Whether it asks for at most one message's worth of readings (a page, not a bulk export)."""
        return 0 < self.max_readings <= self.chunk_size

    @property
    def selective(self) -> bool:
        """Whether it selects by more than how many of the newest readings it wants."""
        return (
            not self.flt.selects_all or self.before_seq is not None or self.after_seq is not None or self.oldest_first
        )


class ExportTurns:
    """At most ``limit`` bulk exports run at once; the others wait their turn, first come first served.

    Each export in progress holds a chunk copied out of the ring, its encoded message and what the
    transport has not sent yet: a few megabytes, per export. Hundreds of callers exporting at once
    (as many function instances would) would each hold as much; waiting in turn they hold nothing,
    and on two cores they would not finish sooner side by side. An export that fits one message
    (a page of ``raw-data``) does not wait: it holds no more than a unary answer would. A wait ends
    with the call's own deadline or cancellation.
    """

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def turn(self, query: ExportQuery) -> AsyncIterator[None]:
        if query.fits_one_message:
            yield
            return
        async with self._slots:
            yield


@dataclass(frozen=True, slots=True)
class _Chunk:
    columns: Columns
    """Codes index the stream's dictionary."""
    new_categories: list[str]
    next_sequence: int | None
    planned: int


def export_messages(store: ReadingStore, query: ExportQuery) -> Iterator[bytes]:
    """The encoded ExportReadingsResponse messages of ``query``, built lazily one at a time."""
    chunks = _selected_chunks(store, query) if query.selective else _newest_chunks(store, query)
    if query.file_format == pb.EXPORT_FORMAT_PARQUET:
        return _parquet_messages(chunks)
    return (
        encode_export_response(chunk.columns, chunk.new_categories, chunk.next_sequence, chunk.planned)
        for chunk in chunks
    )


def _parquet_messages(chunks: Iterator[_Chunk]) -> Iterator[bytes]:
    """A row group a chunk, then the footer in a last message (with next_sequence, if any)."""
    parquet, names = ParquetStream(), list[str]()
    next_sequence: int | None = None
    for chunk in chunks:
        names += chunk.new_categories
        columns = chunk.columns
        pieces = parquet.row_group(columns.timestamps_ns, columns.values, columns.codes, names)
        yield encode_export_data(pieces, len(columns), pb.EXPORT_FORMAT_PARQUET, None, chunk.planned)
        next_sequence = chunk.next_sequence
    yield encode_export_data([parquet.finish()], 0, pb.EXPORT_FORMAT_PARQUET, next_sequence)


async def csv_messages(store: ReadingStore, query: ExportQuery) -> AsyncIterator[bytes]:
    """The CSV file of ``query``, a message a chunk: the header first, then the chunks' lines.

    Each chunk is copied out of the ring on the loop and written in a worker thread (the lines are
    written without the GIL), while the message before it is sent."""
    names: list[str] = []
    next_sequence: int | None = None
    pending: asyncio.Future[bytes] | None = None
    head = HEADER
    for chunk in _selected_chunks(store, query) if query.selective else _newest_chunks(store, query):
        names += chunk.new_categories
        columns = chunk.columns
        copied = Columns(np.array(columns.timestamps_ns), np.array(columns.values), np.array(columns.codes))
        encoding = asyncio.ensure_future(asyncio.to_thread(_csv_message, head, copied, tuple(names), chunk.planned))
        head = b""
        if pending is not None:
            yield await pending
        pending = encoding
        next_sequence = chunk.next_sequence
    if pending is not None:
        yield await pending
    yield encode_export_data([head], 0, pb.EXPORT_FORMAT_CSV, next_sequence)


def _csv_message(head: bytes, columns: Columns, names: tuple[str, ...], planned: int) -> bytes:
    lines = csv_chunk(columns.timestamps_ns, columns.values, columns.codes, names)
    pieces: list[bytes | memoryview] = [head, lines] if head else [lines]
    return encode_export_data(pieces, len(columns), pb.EXPORT_FORMAT_CSV, None, planned)


def _newest_chunks(store: ReadingStore, query: ExportQuery) -> Iterator[_Chunk]:
    """Chunks of the readings held when the export starts, each a fresh copy of a run of the ring."""
    stop = store.total_ingested
    start = stop - query.max_readings if query.max_readings else 0
    dictionary = StreamDictionary(store.dictionary)
    start, stop = store.clamp(start, stop)
    planned = stop - start
    while True:
        start, stop = store.clamp(start, stop)
        if start >= stop:
            return
        run = store.views(start, min(stop, start + query.chunk_size))[0]
        codes, new_categories = dictionary.translate(run.codes)
        late = store.late_flags(np.arange(start, start + len(run))) if query.late_flags else None
        yield _Chunk(Columns(run.timestamps_ns, run.values, codes, late), new_categories, None, planned)
        planned = 0
        start += len(run)


def _selected_chunks(store: ReadingStore, query: ExportQuery) -> Iterator[_Chunk]:
    """Chunks of the matching readings, gathered lazily; the last carries next_sequence when
    ``max_readings`` left matches out."""
    page = select_page(
        store,
        query.flt,
        after_seq=query.after_seq or 0,
        before_seq=query.before_seq,
        limit=query.max_readings,
        oldest_first=query.oldest_first,
    )
    dictionary, planned = StreamDictionary(store.dictionary), len(page.sequences)
    chunk_size = query.chunk_size
    chunks = [page.sequences[i : i + chunk_size] for i in range(0, len(page.sequences), chunk_size)]
    for number, chunk in enumerate(chunks or [page.sequences]):
        columns = gather(store, chunk)
        if not len(columns) and number < len(chunks) - 1:
            continue
        codes, new_categories = dictionary.translate(columns.codes)
        last = number >= len(chunks) - 1
        next_sequence = page.next_sequence if last else None
        late = store.late_flags(held(store, chunk)) if query.late_flags else None
        columns = Columns(columns.timestamps_ns, columns.values, codes, late)
        yield _Chunk(columns, new_categories, next_sequence, planned)
        planned = 0
