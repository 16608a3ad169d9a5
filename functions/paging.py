"""Signed, opaque page tokens for /raw-data (AIP-158), so a stateless function can resume a walk.

A token holds the direction of the walk, the ingestor sequence number where the next page starts
and a digest of the filters that made it, all signed with HMAC-SHA256. The ingestor's sequence
numbers never repeat, so resuming from one returns every matching reading exactly once and skips
the ones evicted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass

_VERSION = 1
_PAYLOAD = struct.Struct("<BBQ8s")
_MAC_SIZE = 16


class Direction(enum.IntEnum):
    BACKWARD = 0
    """Browsing back from now: the next page holds older readings (before the sequence number)."""
    FORWARD = 1
    """Tailing from a point in time: the next page holds newer readings (from the sequence number)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    direction: Direction
    sequence: int


class PageTokenError(ValueError):
    """The token cannot be used for this request; the message says why."""


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_SIZE]


def encode_page_token(cursor: Cursor, filter_digest: bytes, key: bytes) -> str:
    payload = _PAYLOAD.pack(_VERSION, cursor.direction, cursor.sequence, filter_digest)
    return base64.urlsafe_b64encode(payload + _mac(key, payload)).decode().rstrip("=")


def decode_page_token(token: str, filter_digest: bytes, key: bytes) -> Cursor:
    """The cursor of a token this deployment signed for the same filters; PageTokenError otherwise."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    payload, mac = raw[:-_MAC_SIZE], raw[-_MAC_SIZE:]
    if len(payload) != _PAYLOAD.size or not hmac.compare_digest(mac, _mac(key, payload)):
        raise PageTokenError("page_token is invalid: it was altered or not issued by this service")
    version, direction, sequence, digest = _PAYLOAD.unpack(payload)
    if version != _VERSION or direction not in {member.value for member in Direction}:
        raise PageTokenError("page_token is invalid: it was altered or not issued by this service")
    if not hmac.compare_digest(digest, filter_digest):
        raise PageTokenError(
            "page_token was issued for other filters: repeat the category, since and until of the "
            "request that returned it"
        )
    return Cursor(Direction(direction), sequence)


def signing_key(secret: str | None, deployment: str) -> bytes:
    """The configured secret, or one derived from the deployment so that every instance agrees."""
    material = secret if secret else f"realtime-pipeline page tokens for {deployment}"
    return hashlib.sha256(material.encode()).digest()
