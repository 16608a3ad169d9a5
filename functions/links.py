"""Link headers (RFC 8288) whose target works behind a path prefix such as an API Gateway stage."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request


def next_link(request: Request, page_token: str) -> str:
    """``<path?query>; rel="next"``: the same request with ``page_token`` replaced.

    The path keeps the prefix clients use in front of the app's routes: the ``root_path`` that
    ``uvicorn --root-path`` sets, or that functions/gateway.py sets from an API Gateway event.
    """
    prefix = (request.scope.get("root_path") or "").rstrip("/")
    path = request.url.path
    if prefix and not path.startswith(prefix + "/"):
        path = prefix + path
    params = [(name, value) for name, value in request.query_params.multi_items() if name != "page_token"]
    params.append(("page_token", page_token))
    return f'<{path}?{urlencode(params)}>; rel="next"'
