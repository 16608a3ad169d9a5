"""The archive's background task: readings copied from the buffer into Parquet files, published whole.

Every ``TICK_S`` the readings stored since the last tick are copied out of the ring (on the event
loop: a copy of the columns, cheap) and added to the open segment's files by a writer thread
(``ingestor/archive_files.py``). A segment closes once it holds ``file_readings`` readings, or
``interval_s`` after its first one, and a publisher thread makes its files visible
(``ingestor/archive_target.py``), trying again with back-off while the archive cannot be reached.

The archive never holds up the ingestor: while it is down, at most ``WAITING_SEGMENTS`` closed
segments wait (on local disk), copying stops, and readings the buffer evicts before they were copied
are lost to the archive, counted (``evicted_unarchived`` in the status) and logged. In durable mode
only readings already on disk in the data directory are archived, so a crash never leaves a file
holding readings that the journal lost (their numbers would be given again to others); after a
restart the newest archived segment is written again whole when its readings are still held (same
names, same readings: it completes a segment interrupted between two of its date files), and the
archive goes on from its end. So a reading is in the archive at most once whatever the crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ingestor.archive_files import ArchivedRange, SegmentWriter, file_key, parse_key
from ingestor.archive_target import ArchiveTarget
from ingestor.store import ReadingStore

log = logging.getLogger(__name__)

TICK_S = 0.25
PIECE_READINGS = 1 << 20
"""Readings copied out of the ring at a time."""
WAITING_SEGMENTS = 2
"""Closed segments that may wait to be published (on local disk); from there on, copying stops until
one is (a segment cut short by eviction may still join them)."""
RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)
STREAM_FILE = "archive-stream"


@dataclass(frozen=True, slots=True)
class ArchiveStatus:
    archived: int
    """Readings in files published by this run."""
    pending: int
    """Readings stored and not yet in a published file (nor lost to the archive)."""
    evicted_unarchived: int
    """Readings evicted from the buffer before they were archived, since the ingestor started."""
    error: str
    """Why the last attempt to publish failed, while publishing fails; empty otherwise."""


def stream_id(data_dir: Path | None) -> str:
    """The archive's name for the readings this ingestor numbers: kept in the data directory (its
    numbers survive restarts), new on every start without one (numbering starts again at 0)."""
    if data_dir is None:
        return uuid.uuid4().hex[:16]
    path = data_dir / STREAM_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    stream = uuid.uuid4().hex[:16]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(stream + "\n")
    temporary.replace(path)
    return stream


class Archiver:
    def __init__(
        self,
        store: ReadingStore,
        target: ArchiveTarget,
        stream: str,
        committed_total: Callable[[], int] | None = None,
        interval_s: float = 300.0,
        file_readings: int = 16_777_216,
    ) -> None:
        """``committed_total()`` (durable mode): readings numbered below it are on disk."""
        self._store = store
        self._target = target
        self._stream = stream
        self._committed_total = committed_total
        self._interval_s = interval_s
        self._file_readings = file_readings
        self._writer = ThreadPoolExecutor(1, "archive-writer")
        self._publisher = ThreadPoolExecutor(1, "archive-publisher")
        self._queue: asyncio.Queue[SegmentWriter | None] = asyncio.Queue()
        self._cursor = 0
        self._forced_end: int | None = None
        self._segment: SegmentWriter | None = None
        self._opened_at = 0.0
        self._archived = 0
        self._in_segments = 0
        self._lost = 0
        self._error = ""
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return self._target.url

    def status(self) -> ArchiveStatus:
        behind = max(0, self._store.oldest_sequence - self._cursor)
        unread = max(0, self._store.total_ingested - max(self._cursor, self._store.oldest_sequence))
        return ArchiveStatus(self._archived, self._in_segments + unread, self._lost + behind, self._error)

    def start(self) -> None:
        """Copy and publish in the background (durable mode: from where the archive stops for this stream)."""
        self._cursor = self._store.oldest_sequence
        self._tasks = [asyncio.create_task(self._copy_loop()), asyncio.create_task(self._publish_loop())]

    async def _resume(self) -> None:
        """Durable mode: go on from where the archive of this stream stops, once it can be listed."""
        loop = asyncio.get_running_loop()
        for attempt in range(1_000_000_000):
            try:
                ranges = await loop.run_in_executor(self._publisher, self._archived_ranges)
            except Exception as error:
                self._error = f"cannot list {self.url}: {error}"
                if attempt == 0:
                    log.error("archive: %s; trying again", self._error)
                if await self._wait_or_close(attempt):
                    return
            else:
                self._error = ""
                self._cursor = self._resume_point(ranges)
                return

    async def _wait_or_close(self, attempt: int) -> bool:
        """Wait before trying again; True when the archiver is closing instead."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), RETRY_S[min(attempt, len(RETRY_S) - 1)])
        return self._closing.is_set()

    def _archived_ranges(self) -> list[ArchivedRange]:
        """What the archive holds of this stream, once its temporary files are gone (a thread's job)."""
        self._target.clean(self._stream)
        names = self._target.file_names()
        return [found for name in names if (found := parse_key(name)) and found.stream == self._stream]

    def _resume_point(self, ranges: list[ArchivedRange]) -> int:
        oldest = self._store.oldest_sequence
        if not ranges:
            return oldest
        end = max(found.end_seq for found in ranges)
        start = min(found.start_seq for found in ranges if found.end_seq == end)
        if oldest <= start and end <= self._upper():
            self._forced_end = end
            log.info("archive %s: writing segment [%d, %d) again, then going on from it", self.url, start, end)
            return start
        return end

    def _upper(self) -> int:
        total = self._store.total_ingested
        return total if self._committed_total is None else min(total, self._committed_total())

    async def close(self, grace_s: float) -> None:
        """Archive what is stored (durable: on disk) and publish it, for at most ``grace_s``."""
        self._closing.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks), grace_s)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._segment is not None:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._segment.discard)
        self._writer.shutdown(wait=True)
        self._publisher.shutdown(wait=True)
        self._target.close()

    async def _copy_loop(self) -> None:
        if self._committed_total is not None:
            await self._resume()
        while True:
            closing = self._closing.is_set()
            await self._copy()
            if closing:
                segment, self._segment = self._segment, None
                self._enqueue(segment)
                self._queue.put_nowait(None)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), TICK_S)

    async def _copy(self) -> None:
        """Copy what was stored since the last tick into the open segment, closing it when due."""
        loop = asyncio.get_running_loop()
        while True:
            oldest = self._store.oldest_sequence
            if oldest > self._cursor:
                # The segment's range ends where its readings do: the lost ones are in no file.
                interrupted, self._segment = self._segment, None
                self._count_lost(oldest - self._cursor)
                self._cursor = oldest
                self._enqueue(interrupted)
                continue
            if self._queue.qsize() >= WAITING_SEGMENTS:
                return  # copying waits for the publisher; what is evicted meanwhile is counted above
            upper = self._upper() if self._forced_end is None else min(self._upper(), self._forced_end)
            room = self._file_readings - (self._segment.readings if self._segment else 0)
            stop = min(upper, self._cursor + min(room, PIECE_READINGS))
            if stop > self._cursor:
                first = self._cursor
                columns = self._store.read(first, stop)  # no await since oldest_sequence was read
                names = list(self._store.categories)
                if self._segment is None:
                    self._segment = SegmentWriter(
                        first, functools.partial(self._target.local_path, self._stream, first)
                    )
                    self._opened_at = time.monotonic()
                self._cursor = stop
                self._in_segments += stop - first
                await loop.run_in_executor(self._writer, self._segment.add, columns, names, first)
            if self._segment_due():
                segment, self._segment = self._segment, None
                self._enqueue(segment)
            if stop >= upper:
                return

    def _count_lost(self, lost: int) -> None:
        self._lost += lost
        log.warning(
            "archive %s: %d readings were evicted before they were archived (%d since start): %s",
            self.url,
            lost,
            self._lost,
            self._error or "the archive does not keep up",
        )

    def _segment_due(self) -> bool:
        segment = self._segment
        if segment is None or not segment.readings:
            return False
        if self._forced_end is not None:
            return segment.end_seq >= self._forced_end
        return segment.readings >= self._file_readings or time.monotonic() - self._opened_at >= self._interval_s

    def _enqueue(self, segment: SegmentWriter | None) -> None:
        if segment is None:
            return
        self._forced_end = None
        self._queue.put_nowait(segment)

    async def _publish_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while (segment := await self._queue.get()) is not None:
            files = await loop.run_in_executor(self._writer, segment.close)
            for attempt in range(1_000_000_000):
                try:
                    await loop.run_in_executor(self._publisher, self._publish, segment, files)
                    break
                except Exception as error:
                    self._error = f"cannot publish to {self.url}: {error}"
                    if self._closing.is_set():
                        log.error(
                            "archive %s: %s; %d readings stay unarchived", self.url, self._error, segment.readings
                        )
                        return
                    if attempt == 0:
                        log.error("archive: %s; trying again", self._error)
                    await self._wait_or_close(attempt)
            self._error = ""
            self._archived += segment.readings
            self._in_segments -= segment.readings

    def _publish(self, segment: SegmentWriter, files: list[tuple[str, Path]]) -> None:
        for date, local in files:
            if local.exists():  # published on an earlier attempt otherwise
                self._target.publish(local, file_key(date, self._stream, segment.start_seq, segment.end_seq))
