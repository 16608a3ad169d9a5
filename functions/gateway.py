"""Behind API Gateway: tell the app the path prefix the client used and the gateway took away.

A REST API stage (``https://.../prod/api/v1/health``) hands Lambda ``path=/api/v1/health``: the app
routes it, but pages that link to the app itself (``/docs`` loads ``openapi.json``) would point
outside the stage. An HTTP API on a named stage keeps the stage in the path instead, and nothing
would route. Both are fixed the ASGI way: ``root_path`` is the prefix and ``path`` includes it,
which Starlette routes on and FastAPI builds its links and OpenAPI ``servers`` from.

The app itself stays unaware of Lambda; only the handler wraps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


def gateway_prefix(event: Mapping[str, Any]) -> str:
    """The path prefix the client saw before the app's own path, from an API Gateway event."""
    context = event.get("requestContext") or {}
    if "httpMethod" in event:  # REST API, payload 1.0: requestContext.path is what the client asked for
        client_path = (context.get("path") or "").rstrip("/")
        app_path = (event.get("path") or "").rstrip("/")
        if client_path.endswith(app_path) and client_path != app_path:
            return client_path[: len(client_path) - len(app_path)]
        return ""
    stage = context.get("stage") or "$default"  # HTTP API, payload 2.0: only a named stage is a prefix
    prefix = f"/{stage}"
    path = (context.get("http") or {}).get("path") or ""
    if stage != "$default" and (path == prefix or path.startswith(f"{prefix}/")):
        return prefix
    return ""


class GatewayPrefix:
    """ASGI middleware: sets ``root_path`` (and prefixes ``path``) from the event Mangum passes along."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = scope.get("aws.event")
        if scope["type"] == "http" and isinstance(event, Mapping):
            prefix = gateway_prefix(event)
            if prefix:
                path = scope["path"]
                if not (path == prefix or path.startswith(f"{prefix}/")):
                    path = prefix + path
                scope = {**scope, "root_path": prefix, "path": path}
        await self.app(scope, receive, send)
