"""A limit on request bodies for every route: 413 beyond it, before an endpoint sees the body.

A declared Content-Length over the limit is refused at once, before the app runs. A body without
one (chunked) is counted as the app reads it: going past the limit raises an HTTPException(413),
which FastAPI answers in its usual ``{"detail": ...}`` shape.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self._max = max_bytes

    def _too_large(self) -> str:
        return f"the request body must be at most {self._max} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            # ASCII digits only: str.isdigit() also takes the superscripts that latin-1 decodes to.
            if not (declared.isascii() and declared.isdigit()):
                await JSONResponse({"detail": "the Content-Length header is not a number"}, 400)(scope, receive, send)
                return
            digits = declared.lstrip("0")  # Python converts at most 4,300 digits to an int
            if len(digits) > len(str(self._max)) or int(digits or "0") > self._max:
                await JSONResponse({"detail": self._too_large()}, 413)(scope, receive, send)
                return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, counting_receive, send)
