"""The server's shutdown as the app sees it: long responses end in time instead of holding it up.

uvicorn's graceful shutdown waits for every open response, and an event stream does not end by
itself. ``python -m functions`` calls :func:`begin` as its shutdown starts. Then each event stream
(:func:`watch`) ends at once with a last event, and :class:`ShutdownDeadlineMiddleware` answers
any request still running ``grace_s`` later with a 503, before uvicorn's own grace (the same
SHUTDOWN_GRACE_S plus a margin) would cancel it without an answer. Under plain ``uvicorn
functions.app:app`` nothing calls :func:`begin`: give uvicorn ``--timeout-graceful-shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_callbacks: set[Callable[[], None]] = set()
_begun = False


def begin() -> None:
    """Tell everyone watching, now and later, that the server is shutting down. Call it on the loop."""
    global _begun
    _begun = True
    for callback in list(_callbacks):
        callback()


@contextlib.contextmanager
def on_shutdown(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` when the shutdown begins (at once if it has), while the block runs."""
    _callbacks.add(callback)
    try:
        if _begun:
            callback()
        yield
    finally:
        _callbacks.discard(callback)


@contextlib.contextmanager
def watch() -> Iterator[asyncio.Event]:
    """An event set once the server begins to shut down."""
    event = asyncio.Event()
    with on_shutdown(event.set):
        yield event


_SHUTTING_DOWN = "the server is shutting down: try again"


class ShutdownDeadlineMiddleware:
    """Gives each request at most ``grace_s`` once the shutdown begins, then answers 503."""

    def __init__(self, app: ASGIApp, grace_s: float) -> None:
        self.app = app
        self.grace_s = grace_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        def expire_soon() -> None:
            deadline.reschedule(loop.time() + self.grace_s)

        try:
            async with asyncio.timeout(None) as deadline:
                with on_shutdown(expire_soon):
                    await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if not deadline.expired():
                raise
            if started:  # an unfinished response: the server closes the connection
                return
            refusal = JSONResponse({"detail": _SHUTTING_DOWN}, 503, headers={"Connection": "close"})
            await refusal(scope, receive, send)
