"""Open event streams: how many this process serves, and a response that ends a stuck one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)


class StreamSlots:
    """Counts the event streams open in this process, against a limit given with each request."""

    def __init__(self) -> None:
        self.open = 0

    def acquire(self, limit: int) -> bool:
        """Take a slot; False when ``limit`` streams are open already."""
        if self.open >= limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


OPEN_STREAMS = StreamSlots()
"""The process's event streams (a process serves one event loop: no lock needed)."""


class EventStreamResponse(StreamingResponse):
    """A text/event-stream response that releases its slot when it ends, however it ends, and gives
    up on a client that has taken nothing for ``write_timeout_s``: the connection is then closed.

    A client that does not read would otherwise hold its slot, and the stream's buffers, for as
    long as it keeps the connection open.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncGenerator[bytes, None],
        *,
        slots: StreamSlots,
        write_timeout_s: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, headers=headers)
        self._events = content
        self._slots = slots
        self._write_timeout_s = write_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.release()

    async def stream_response(self, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self._events:
                try:
                    async with asyncio.timeout(self._write_timeout_s):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except TimeoutError:
                    # Returning with the response unfinished makes the server close the connection.
                    log.warning("closed an event stream whose client took nothing for %g s", self._write_timeout_s)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await self._events.aclose()
