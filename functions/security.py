"""The optional API token: one check in front of every route, so new endpoints are covered too.

With API_TOKEN set, every request whose method can change state (anything but GET, HEAD and
OPTIONS) needs ``Authorization: Bearer <token>``; with API_TOKEN_FOR_READS, reads too, on every
path but an allow-list (/api/v1/health and the API's documentation pages). Anything else is 401
with ``WWW-Authenticate: Bearer``. Tokens are compared in constant time. Deployments behind a
gateway authorizer leave API_TOKEN unset.

The decision is made on the path the app routes on, with the root path removed: behind
``uvicorn --root-path /prod`` or an API Gateway stage the request's path is ``/prod/api/v1/...``.
An allow-list rather than a list of what to protect: a path it does not name exactly (an endpoint
added later, a prefix this module did not foresee) needs the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection

from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALWAYS_OPEN = frozenset({"/api/v1/health", "/api/v1/ready"})
"""Route paths that never need the token (probes send none); the app adds the pages of its documentation."""


def needs_token(method: str, route_path: str, protect_reads: bool, open_paths: Collection[str] = ALWAYS_OPEN) -> bool:
    """Whether a request needs the token once API_TOKEN is set; ``route_path`` is without the root path."""
    if method.upper() not in SAFE_METHODS:
        return True
    return protect_reads and route_path not in open_paths


class BearerTokenMiddleware:
    def __init__(
        self, app: ASGIApp, token: str, protect_reads: bool = False, open_paths: Collection[str] = ALWAYS_OPEN
    ) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()
        self._protect_reads = protect_reads
        self._open_paths = frozenset(open_paths)

    def _needs_token(self, scope: Scope) -> bool:
        # Starlette's own function, so the path checked is the path the router matches.
        return needs_token(scope["method"], get_route_path(scope), self._protect_reads, self._open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._needs_token(scope):
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("authorization")
        # As bytes: compare_digest refuses a str with characters beyond ASCII, which a header may carry.
        if given is not None and hmac.compare_digest(given.encode("latin-1"), self._expected):
            await self.app(scope, receive, send)
            return
        if given is None:
            detail, challenge = "a bearer token is required", 'Bearer realm="api"'
        else:
            detail, challenge = "the bearer token is not valid", 'Bearer realm="api", error="invalid_token"'
        refusal = JSONResponse({"detail": detail}, 401, headers={"WWW-Authenticate": challenge})
        await refusal(scope, receive, send)
