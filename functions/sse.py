"""Server-Sent Events from a stream of reading batches: batched, with gap events. No gRPC here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
"""At most one write every 100 ms: at high rates readings are sent in batches."""
KEEPALIVE_S = 15.0
"""A comment line when nothing happened for this long, so idle connections stay open."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings in arrival order (JSON-ready), then how many the subscriber lost after them."""

    readings: list[dict[str, Any]]
    missed: int = 0


class StreamFailed(Exception):
    """The source of readings ended with an error; the message is safe to show."""


def encode_events(batches: list[Batch]) -> bytes:
    """``data:`` events of JSON arrays and ``event: gap`` events, in order; adjacent readings merged."""
    out: list[bytes] = []
    pending: list[dict[str, Any]] = []
    for batch in batches:
        pending.extend(batch.readings)
        if batch.missed:
            if pending:
                out.append(b"data: " + orjson.dumps(pending) + b"\n\n")
                pending = []
            out.append(b"event: gap\ndata: " + orjson.dumps({"missed": batch.missed}) + b"\n\n")
    if pending:
        out.append(b"data: " + orjson.dumps(pending) + b"\n\n")
    return b"".join(out)


async def sse_events(
    source: AsyncIterator[Batch],
    *,
    flush_interval_s: float = FLUSH_INTERVAL_S,
    keepalive_s: float = KEEPALIVE_S,
) -> AsyncIterator[bytes]:
    """The event stream of ``source``, written at most every ``flush_interval_s``.

    A bounded queue sits between the source and the writer: when the client stops reading, the
    source is not read either, and the backlog builds up (and is counted) at the ingestor.
    """
    queue: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(maxsize=8)

    async def pump() -> None:
        try:
            async for batch in source:
                await queue.put(batch)
        except StreamFailed as error:
            await queue.put(error)
        except Exception:
            log.exception("the stream of readings failed")
            await queue.put(StreamFailed("the stream of readings failed"))
        else:
            await queue.put(None)

    loop = asyncio.get_running_loop()
    task = loop.create_task(pump())
    last_write = -flush_interval_s
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            wait = last_write + flush_interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            items = [item]
            while not queue.empty() and isinstance(items[-1], Batch):
                items.append(queue.get_nowait())
            batches = [entry for entry in items if isinstance(entry, Batch)]
            if batches:
                yield encode_events(batches)
                last_write = loop.time()
            end = items[-1]
            if isinstance(end, BaseException):
                yield b"event: error\ndata: " + orjson.dumps({"detail": str(end)}) + b"\n\n"
                return
            if end is None:
                return
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
