"""Server-Sent Events from a stream of reading batches: batched, bounded, with gap events. No gRPC here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from functions import shutdown
from functions.readings import Readings, raw_records

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
"""At most one burst of writes every 100 ms: at high rates readings are sent in batches."""
KEEPALIVE_S = 15.0
"""A comment line when nothing happened for this long, so idle connections stay open."""
BACKLOG_READINGS = 8192
"""Readings waiting to be written to one client, at most (about 150 KB, kept as columns). Beyond
it the source is not read any more, and the backlog builds up, and is counted, at the ingestor."""
EVENT_READINGS = 1024
"""Readings per ``data:`` event at most: one write is then at most about 85 KB of JSON."""
SHUTTING_DOWN = "the server is shutting down"


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings in arrival order, then how many the subscriber lost after them.

    The readings stay columns until they are written; JSON-ready dicts are taken as they are.
    """

    readings: Readings | Sequence[Mapping[str, Any]]
    missed: int = 0
    sequences: np.ndarray | None = None
    """Each reading's sequence number at the ingestor, when known: the events' ``id``."""


class StreamFailed(Exception):
    """The source of readings ended with an error; the message is safe to show."""


def _records(readings: Readings | Sequence[Mapping[str, Any]], start: int, stop: int) -> list[Any]:
    if isinstance(readings, Readings):
        return raw_records(readings.slice(start, stop))
    return list(readings[start:stop])


def data_event(records: list[Any], last_sequence: int | None) -> bytes:
    """A ``data:`` event; with ``id:`` the sequence number of its last reading, when known."""
    head = b"" if last_sequence is None else b"id: %d\n" % last_sequence
    return head + b"data: " + orjson.dumps(records) + b"\n\n"


def event_chunks(batches: Sequence[Batch], max_readings: int = EVENT_READINGS) -> Iterator[bytes]:
    """``data:`` events of JSON arrays of at most ``max_readings`` readings, and ``event: gap``
    events, in order; adjacent readings merged. Each event is encoded only when it is due, with
    the sequence number of its last reading as its ``id`` when the batches know it."""
    pending: list[Any] = []
    last_sequence: int | None = None
    for batch in batches:
        start, count = 0, len(batch.readings)
        while start < count:
            stop = min(count, start + max_readings - len(pending))
            pending += _records(batch.readings, start, stop)
            last_sequence = None if batch.sequences is None else int(batch.sequences[stop - 1])
            start = stop
            if len(pending) >= max_readings:
                yield data_event(pending, last_sequence)
                pending = []
        if batch.missed:
            if pending:
                yield data_event(pending, last_sequence)
                pending = []
            yield b"event: gap\ndata: " + orjson.dumps({"missed": batch.missed}) + b"\n\n"
    if pending:
        yield data_event(pending, last_sequence)


def encode_events(batches: Sequence[Batch], max_readings: int = EVENT_READINGS) -> bytes:
    """All of :func:`event_chunks` at once."""
    return b"".join(event_chunks(batches, max_readings))


def error_event(detail: str) -> bytes:
    return b"event: error\ndata: " + orjson.dumps({"detail": detail}) + b"\n\n"


_OPEN = object()
"""The backlog's end while the source still runs."""


class _Backlog:
    """Batches between the source and the writer, bounded by readings, then how the source ended."""

    def __init__(self, max_readings: int) -> None:
        self._max_readings = max_readings
        self._batches: deque[Batch] = deque()
        self._readings = 0
        self._end: object = _OPEN
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()

    async def put(self, batch: Batch) -> None:
        """Queue ``batch`` once the backlog holds fewer than its bound (an empty one takes any batch)."""
        while self._batches and self._readings >= self._max_readings:
            self._room.clear()
            await self._room.wait()
        self._batches.append(batch)
        self._readings += len(batch.readings)
        self._arrived.set()

    def finish(self, end: BaseException | None) -> None:
        """The source ended, well (None) or not; the first end counts."""
        if self._end is _OPEN:
            self._end = end
            self._arrived.set()

    @property
    def readings(self) -> int:
        return self._readings

    def take(self, max_readings: int) -> tuple[list[Batch], object]:
        """The oldest batches, whole, up to ``max_readings`` readings (at least one batch), and the
        end once nothing is left (``_OPEN`` until then, or while the source runs)."""
        batches: list[Batch] = []
        taken = 0
        while self._batches and (not batches or taken + len(self._batches[0].readings) <= max_readings):
            batch = self._batches.popleft()
            batches.append(batch)
            taken += len(batch.readings)
        self._readings -= taken
        self._room.set()
        if not self._batches:
            self._arrived.clear()
            return batches, self._end
        return batches, _OPEN

    async def wait(self) -> None:
        """Until something is queued or the source ended."""
        while not self._batches and self._end is _OPEN:
            self._arrived.clear()
            await self._arrived.wait()


async def sse_events(
    source: AsyncIterator[Batch],
    *,
    flush_interval_s: float = FLUSH_INTERVAL_S,
    keepalive_s: float = KEEPALIVE_S,
    backlog_readings: int = BACKLOG_READINGS,
    event_readings: int = EVENT_READINGS,
    stop: asyncio.Event | None = None,
    encode: Callable[[Sequence[Batch], int], Iterator[bytes]] = event_chunks,
) -> AsyncGenerator[bytes, None]:
    """The event stream of ``source``, written in bursts at most every ``flush_interval_s``.

    A backlog of at most ``backlog_readings`` readings sits between the source and the writer: when
    the client stops reading, the source is not read either. When ``stop`` is set (by default: when
    the server begins to shut down) the source is dropped, and the stream ends with what is queued
    and a last ``event: error``. ``encode`` turns the batches of a burst into events (by default
    readings as JSON arrays); a StreamFailed it raises ends the stream with ``event: error``.
    """
    backlog = _Backlog(backlog_readings)

    async def pump() -> None:
        try:
            async for batch in source:
                await backlog.put(batch)
        except StreamFailed as error:
            backlog.finish(error)
        except Exception:
            log.exception("the stream of readings failed")
            backlog.finish(StreamFailed("the stream of readings failed"))
        else:
            backlog.finish(None)

    async def end_on(event: asyncio.Event) -> None:
        await event.wait()
        pumping.cancel()
        backlog.finish(StreamFailed(SHUTTING_DOWN))

    loop = asyncio.get_running_loop()
    with contextlib.ExitStack() as stack:
        event = stop if stop is not None else stack.enter_context(shutdown.watch())
        pumping = loop.create_task(pump())
        stopping = loop.create_task(end_on(event))
        last_write = -flush_interval_s
        try:
            while True:
                try:
                    async with asyncio.timeout(keepalive_s):
                        await backlog.wait()
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                wait = last_write + flush_interval_s - loop.time()
                if wait > 0 and not event.is_set():
                    await asyncio.sleep(wait)
                # A burst: what is queued now, taken an event at a time, so that a client that
                # does not read holds up the backlog and one event, no more.
                due = backlog.readings
                while True:
                    batches, end = backlog.take(event_readings)
                    due -= sum(len(batch.readings) for batch in batches)
                    try:
                        for chunk in encode(batches, event_readings):
                            yield chunk
                            last_write = loop.time()
                    except StreamFailed as error:
                        end = error
                        break
                    if end is not _OPEN or due <= 0:
                        break
                if isinstance(end, BaseException):
                    yield error_event(str(end))
                    return
                if end is None:
                    return
        finally:
            for task in (pumping, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
