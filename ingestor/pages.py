"""ListReadings paging: the newest readings below a page token, and the token that continues below them.

A token is the sequence number the next page ends before, base64url without padding: 8 bytes when
the listing is unfiltered, 12 when it is filtered, the last 4 a fingerprint of the filters, so
that a token is refused for a listing with other filters. Knows nothing of gRPC.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any

from ingestor.errors import InvalidArgument
from ingestor.query import ReadingFilter, gather, select_page
from ingestor.store import Columns, ReadingStore

_PAGE_TOKEN = struct.Struct("<Q")
_FILTERED_PAGE_TOKEN = struct.Struct("<QI")
_NOT_OURS = "page_token is not a token this service issued"
_OTHER_FILTERS = "page_token was issued for other filters"


@dataclass(frozen=True, slots=True)
class ReadingsPage:
    columns: Columns
    """The page's readings (a copy), oldest first."""
    next_page_token: str
    """Where the next page continues; empty when nothing older is held."""


def newest_page(store: ReadingStore, flt: ReadingFilter, page_size: int, page_token: str = "") -> ReadingsPage:
    """At most ``page_size`` of the newest readings that match, below ``page_token`` when given."""
    if not flt.selects_all:
        return _filtered_page(store, flt, page_size, page_token)
    stop = store.total_ingested
    if page_token:
        stop = _within_store(store, decode_page_token(page_token))
    start, stop = store.clamp(stop - page_size, stop)
    more = start > store.oldest_sequence
    return ReadingsPage(store.read(start, stop), encode_page_token(start) if more else "")


def _filtered_page(store: ReadingStore, flt: ReadingFilter, page_size: int, page_token: str) -> ReadingsPage:
    before = store.total_ingested
    if page_token:
        before = _within_store(store, decode_filtered_page_token(page_token, flt))
    page = select_page(store, flt, before_seq=before, limit=page_size)
    next_token = "" if page.next_sequence is None else encode_filtered_page_token(page.next_sequence, flt)
    return ReadingsPage(gather(store, page.sequences), next_token)


def _within_store(store: ReadingStore, before_seq: int) -> int:
    if before_seq > store.total_ingested:
        raise InvalidArgument(_NOT_OURS)
    return before_seq


def encode_page_token(before_seq: int) -> str:
    return _encode_token(_PAGE_TOKEN.pack(before_seq))


def decode_page_token(token: str) -> int:
    """The sequence number a page token points below; InvalidArgument when it is not one of ours."""
    (before_seq,) = _decode_token(token, _PAGE_TOKEN, other=_FILTERED_PAGE_TOKEN)
    return int(before_seq)


def encode_filtered_page_token(before_seq: int, flt: ReadingFilter) -> str:
    return _encode_token(_FILTERED_PAGE_TOKEN.pack(before_seq, flt.fingerprint()))


def decode_filtered_page_token(token: str, flt: ReadingFilter) -> int:
    """Like decode_page_token, for a token that must have been issued for the same filters."""
    before_seq, fingerprint = _decode_token(token, _FILTERED_PAGE_TOKEN, other=_PAGE_TOKEN)
    if fingerprint != flt.fingerprint():
        raise InvalidArgument(_OTHER_FILTERS)
    return int(before_seq)


def _encode_token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, layout: struct.Struct, other: struct.Struct) -> tuple[Any, ...]:
    """The fields of a token of ``layout``; a token of the ``other`` layout was issued for other filters."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidArgument(_NOT_OURS) from None
    if len(raw) == other.size:
        raise InvalidArgument(_OTHER_FILTERS)
    try:
        return layout.unpack(raw)
    except struct.error:
        raise InvalidArgument(_NOT_OURS) from None
