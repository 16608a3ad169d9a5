"""HTTP clients of an API process started by a test."""

from __future__ import annotations

import httpx

from devtools.processes import ServerProcess


def api_http(api: ServerProcess, timeout: float | httpx.Timeout = 10) -> httpx.Client:
    """A client of ``api``'s /api/v1 (close it, or use it in a ``with``)."""
    return httpx.Client(base_url=f"http://{api.address}/api/v1", timeout=timeout)
