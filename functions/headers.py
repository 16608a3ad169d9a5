"""Headers that answers carry whatever wrote them (a route, a middleware's 401 or 413, a 500).

Every response: ``X-Content-Type-Options: nosniff``, so a browser never runs an answer as a type
other than the one declared. JSON answers, data and errors alike: ``Cache-Control: no-store``,
since readings change from one call to the next and an answer given to a caller with a token must
not be kept by a shared cache. HTML pages: a Content-Security-Policy that lets them load scripts,
styles, images and data from the app's own origin only (no inline script, no other host), and
never be framed. A header
the response set itself wins: the event stream keeps its ``Cache-Control: no-cache``, an asset its
own caching, ReDoc its policy.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVERY_RESPONSE: Mapping[str, str] = {"X-Content-Type-Options": "nosniff"}
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
)
BY_MEDIA_TYPE: Mapping[str, Mapping[str, str]] = {
    "application/json": {"Cache-Control": "no-store"},
    "text/html": {"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"},
}


def media_type(content_type: str) -> str:
    """``application/json`` of ``Application/JSON; charset=utf-8``."""
    return content_type.partition(";")[0].strip().lower()


class ResponseHeadersMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        every_response: Mapping[str, str] = EVERY_RESPONSE,
        by_media_type: Mapping[str, Mapping[str, str]] = BY_MEDIA_TYPE,
    ) -> None:
        self.app = app
        self._every_response = dict(every_response)
        self._by_media_type = {media_type(name): dict(headers) for name, headers in by_media_type.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for_type = self._by_media_type.get(media_type(headers.get("content-type", "")), {})
                for name, value in (*self._every_response.items(), *for_type.items()):
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
