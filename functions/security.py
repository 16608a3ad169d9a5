"""The optional API token: one check in front of every route, so new endpoints are covered too.

With API_TOKEN set, every request whose method can change state (anything but GET, HEAD and
OPTIONS) needs ``Authorization: Bearer <token>``; with API_TOKEN_FOR_READS, reads under /api/v1
too, except /health. Anything else is 401 with ``WWW-Authenticate: Bearer``. Tokens are compared
in constant time. Deployments behind a gateway authorizer leave API_TOKEN unset.
"""

from __future__ import annotations

import hmac

from functions.asgi import ASGIApp, Receive, Scope, Send, header, send_error

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api/v1/"
ALWAYS_OPEN = frozenset({"/api/v1/health"})


def needs_token(method: str, path: str, protect_reads: bool) -> bool:
    """Whether a request needs the token once API_TOKEN is set."""
    if method.upper() not in SAFE_METHODS:
        return True
    return protect_reads and path.startswith(API_PREFIX) and path not in ALWAYS_OPEN


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp, token: str, protect_reads: bool = False) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()
        self._protect_reads = protect_reads

    def _needs_token(self, scope: Scope) -> bool:
        return needs_token(scope["method"], scope["path"], self._protect_reads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._needs_token(scope):
            await self.app(scope, receive, send)
            return
        given = header(scope, b"authorization")
        if given is not None and hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        if given is None:
            detail, challenge = "a bearer token is required", b'Bearer realm="api"'
        else:
            detail, challenge = "the bearer token is not valid", b'Bearer realm="api", error="invalid_token"'
        await send_error(send, 401, detail, [(b"www-authenticate", challenge)])
