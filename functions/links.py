"""Link headers (RFC 8288) whose target works behind a path prefix such as an API Gateway stage."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request


def public_prefix(request: Request) -> str:
    """The path prefix clients use in front of the app's routes.

    ``root_path`` when the server sets it (``uvicorn --root-path``). Mangum leaves it empty, so
    behind an API Gateway REST stage it is read from the event: ``requestContext.path`` is the
    public path (``/prod/api/v1/...``) and ``path`` the one the app sees.
    """
    root_path = request.scope.get("root_path") or ""
    if root_path:
        return root_path.rstrip("/")
    event = request.scope.get("aws.event")
    if isinstance(event, dict):
        public = (event.get("requestContext") or {}).get("path")
        path = event.get("path")
        if isinstance(public, str) and isinstance(path, str) and path and public.endswith(path):
            return public[: -len(path)].rstrip("/")
    return ""


def next_link(request: Request, page_token: str) -> str:
    """``<path?query>; rel="next"``: the same request with ``page_token`` replaced."""
    prefix = public_prefix(request)
    path = request.url.path
    if prefix and not path.startswith(prefix + "/"):
        path = prefix + path
    params = [(name, value) for name, value in request.query_params.multi_items() if name != "page_token"]
    params.append(("page_token", page_token))
    return f'<{path}?{urlencode(params)}>; rel="next"'
