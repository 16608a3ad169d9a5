"""The files the pages load (functions/static/), each under a name that carries its content's hash.

A page names every asset by its hashed path (``static/dashboard/app.3f2a1b4c5d6e.js``), so a
browser may keep an asset for a year and still never runs an old one after an upgrade; the plain
path answers too, revalidated by its ETag. Both are compressed once, on first use, for clients
that take gzip. Nothing is loaded from another host: the third-party libraries are vendored under
functions/static/vendor/ (see the README there).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

STATIC_DIR = Path(__file__).with_name("static")
URL_PREFIX = "static/"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""What is served, by suffix; anything else under static/ (pages, licences, READMEs) is not."""
REWRITES: dict[str, tuple[tuple[bytes, bytes], ...]] = {
    # ReDoc's sidebar shows its maker's logo from their CDN, unconditionally: an empty image instead.
    "vendor/redoc/redoc.standalone.js": (
        (
            b"https://cdn.redoc.ly/redoc/logo-mini.svg",
            b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
        ),
    ),
}
"""Changes made to vendored files as they are loaded, so that the files stay as published."""


@dataclass(frozen=True, eq=False)
class Asset:
    path: str
    """Relative to static/, with forward slashes: ``dashboard/app.js``."""
    content: bytes = field(repr=False)

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()[:12]

    @property
    def hashed_path(self) -> str:
        """``dashboard/app.3f2a1b4c5d6e.js``."""
        pure = PurePosixPath(self.path)
        return str(pure.with_name(f"{pure.stem}.{self.digest}{pure.suffix}"))

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[PurePosixPath(self.path).suffix]

    @cached_property
    def gzipped(self) -> bytes:
        return gzip.compress(self.content, compresslevel=9, mtime=0)

    def etag(self, compressed: bool) -> str:
        return f'"{self.digest}{"-gz" if compressed else ""}"'


@dataclass(frozen=True)
class AssetLookup:
    asset: Asset
    immutable: bool
    """Asked for by its hashed name: it never changes."""


class Assets:
    """Every servable file under a directory, by its plain and its hashed path."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._by_path: dict[str, AssetLookup] = {}
        for file in sorted(root.rglob("*")):
            if file.is_file() and file.suffix in MEDIA_TYPES:
                path = file.relative_to(root).as_posix()
                content = file.read_bytes()
                for old, new in REWRITES.get(path, ()):
                    content = content.replace(old, new)
                asset = Asset(path, content)
                self._by_path[asset.path] = AssetLookup(asset, immutable=False)
                self._by_path[asset.hashed_path] = AssetLookup(asset, immutable=True)

    def find(self, path: str) -> AssetLookup | None:
        return self._by_path.get(path)

    def url(self, path: str) -> str:
        """The hashed URL of ``path``, relative to the app's root (pages set ``<base>`` to it)."""
        lookup = self._by_path[path]
        return URL_PREFIX + lookup.asset.hashed_path

    def paths(self) -> list[str]:
        """Every path an asset answers at, below the app's root (``/static/...``)."""
        return [f"/{URL_PREFIX}{path}" for path in self._by_path]


ASSETS = Assets()
