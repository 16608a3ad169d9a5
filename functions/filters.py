"""The category/time filter shared by the query endpoints, parsed from HTTP query parameters."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Query
from pydantic import BeforeValidator, StringConstraints

from functions.timestamps import to_ns
from functions.validation import request_error

CATEGORY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

CategoryName = Annotated[str, StringConstraints(pattern=CATEGORY_PATTERN)]
"""A category in a query string; FastAPI checks the pattern and the schema documents it."""

CategoryParam = Annotated[
    list[CategoryName] | None,
    Query(
        description="Only these categories (repeat the parameter for several)",
        max_length=64,
        examples=[["A", "B"]],
    ),
]


def _iso_8601_only(value: object) -> object:
    """pydantic would read a bare number as seconds since the epoch; the API speaks ISO 8601 only."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("must be an ISO 8601 date-time such as 2024-01-20T10:00:00Z, not a number")
    return value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_8601_only)]

SinceParam = Annotated[
    IsoDateTime | None,
    Query(description="Only readings with event time at or after this (ISO 8601; no offset means UTC)"),
]
UntilParam = Annotated[
    IsoDateTime | None,
    Query(description="Only readings with event time before this (ISO 8601; no offset means UTC)"),
]


MAX_SEQUENCE = 10**18 - 1
SEQUENCE_PATTERN = r"^(0|[1-9][0-9]{0,17})$"
"""A sequence number as text (a header): at most MAX_SEQUENCE, as the query parameter."""

AfterSequenceParam = Annotated[
    int | None,
    Query(
        ge=-1,
        le=MAX_SEQUENCE,
        description="Only readings with a sequence number (arrival order at the ingestor) above this, oldest "
        "first: the `id` of the last stream event, or the `Next-After-Sequence` header of the last raw-data "
        "answer; -1 for every reading held",
    ),
]


@dataclass(frozen=True, slots=True)
class ReadingQuery:
    """Which readings a request is about: categories (all when empty), event time in [since, until)."""

    categories: tuple[str, ...] = ()
    since_ns: int | None = None
    until_ns: int | None = None

    @property
    def selects_all(self) -> bool:
        return not self.categories and self.since_ns is None and self.until_ns is None

    def digest(self) -> bytes:
        """8 bytes that differ between different filters (and not between orderings of categories)."""
        canonical = f"{','.join(self.categories)}|{self.since_ns}|{self.until_ns}"
        return hashlib.sha256(canonical.encode()).digest()[:8]


def reading_query(category: list[str] | None, since: datetime | None, until: datetime | None) -> ReadingQuery:
    """The filter of a request whose parameters FastAPI checked one by one; since after until is a 422."""
    query = ReadingQuery(
        tuple(sorted(set(category or ()))),
        None if since is None else to_ns(since),
        None if until is None else to_ns(until),
    )
    if query.since_ns is not None and query.until_ns is not None and query.since_ns > query.until_ns:
        raise request_error(("query", "since"), "since must not be after until", since.isoformat() if since else None)
    return query
