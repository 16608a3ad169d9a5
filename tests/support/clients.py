"""HTTP clients of an API process started by a test."""

from __future__ import annotations

import httpx

from devtools.processes import ServerProcess

# uvicorn closes a connection idle for 5 s; a client that keeps one as long may send its
# next request just as the server closes it ("Server disconnected without sending a
# response"). Letting idle connections go well before the server does avoids that race.
IDLE_CONNECTION_SECONDS = 1.0


def http_client(base_url: str = "", timeout: float | httpx.Timeout = 10) -> httpx.Client:
    """A client that never reuses a connection the server may be closing."""
    limits = httpx.Limits(keepalive_expiry=IDLE_CONNECTION_SECONDS)
    return httpx.Client(base_url=base_url, timeout=timeout, limits=limits)


def api_http(api: ServerProcess, timeout: float | httpx.Timeout = 10) -> httpx.Client:
    """A client of ``api``'s /api/v1 (close it, or use it in a ``with``)."""
    return http_client(f"http://{api.address}/api/v1", timeout)
