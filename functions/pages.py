"""The pages a browser opens: the dashboard at the root, the API's docs, and the files they load.

Pages are HTML files under functions/static/pages/ whose ``{{static:PATH}}`` placeholders become
hashed asset URLs once, at import, and whose ``{{base}}`` becomes ``<root path>/`` per request: every
URL in a page, and every call its scripts make, is relative to that base, so the same page works at
``/``, behind ``uvicorn --root-path /prod`` and at an API Gateway stage (``/prod`` with or without
the trailing slash). No inline script anywhere: the Content-Security-Policy forbids them.
"""

from __future__ import annotations

import html
import re
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from functions.assets import ASSETS, STATIC_DIR, Assets

router = APIRouter(include_in_schema=False)

PAGES = {"/": "dashboard.html", "/docs": "docs.html", "/redoc": "redoc.html"}
"""Route path -> page file; no token is asked for them (their data calls need it)."""
OPENAPI_URL = "/openapi.json"
_STATIC = re.compile(r"\{\{static:([^}]+)\}\}")
_REDOC_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; worker-src 'self' blob:; base-uri 'self'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""ReDoc writes its styles into <style> elements as it renders, and searches in a worker it makes
from a blob: scripts still come from the app only."""


def render_page(name: str, assets: Assets = ASSETS) -> str:
    """A page's HTML with its assets' hashed URLs in place; ``{{base}}`` is left for each request."""
    text = (STATIC_DIR / "pages" / name).read_text()
    return _STATIC.sub(lambda match: assets.url(match.group(1)), text)


_RENDERED = {path: render_page(name) for path, name in PAGES.items()}


def open_page_paths() -> frozenset[str]:
    """Route paths a browser loads before it has the token: the pages, their assets, the schema."""
    return frozenset({*PAGES, OPENAPI_URL, *ASSETS.paths()})


def _page(request: Request, route_path: str) -> HTMLResponse:
    base = html.escape(request.scope.get("root_path", "").rstrip("/") + "/", quote=True)
    headers = {"Content-Security-Policy": _REDOC_CSP} if route_path == "/redoc" else None
    return HTMLResponse(_RENDERED[route_path].replace("{{base}}", base), headers=headers)


@router.get("/")
async def dashboard(request: Request) -> HTMLResponse:
    return _page(request, "/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, "/docs")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _page(request, "/redoc")


@router.get("/static/{path:path}")
async def static_asset(
    path: str,
    accept_encoding: Annotated[str, Header()] = "",
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """An asset by its hashed name (cached for a year) or its plain one (revalidated by ETag)."""
    lookup = ASSETS.find(path)
    if lookup is None:
        raise HTTPException(404, f"no asset {path!r}")
    asset = lookup.asset
    compressed = "gzip" in accept_encoding.lower()
    etag = asset.etag(compressed)
    headers = {
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "Cache-Control": "public, max-age=31536000, immutable" if lookup.immutable else "no-cache",
    }
    if if_none_match is not None and etag in {tag.strip() for tag in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    if compressed:
        headers["Content-Encoding"] = "gzip"
    return Response(asset.gzipped if compressed else asset.content, media_type=asset.media_type, headers=headers)
