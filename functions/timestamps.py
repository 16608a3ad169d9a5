"""Event times: datetimes to the ingestor's int64 nanoseconds, and nanoseconds to ISO 8601 text."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from functions.text_columns import iso_timestamps

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = (-(2**63), 2**63 - 1)


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch (no offset means UTC), clamped to what a reading's int64
    timestamp holds (1677 to 2262): a bound outside that range selects the same readings as one
    at its edge."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return min(max(ns, _INT64[0]), _INT64[1])


def format_timestamps(timestamps_ns: np.ndarray) -> np.ndarray:
    """ISO 8601 in UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, truncated from nanoseconds, vectorised: the
    exports' formatter (``functions/text_columns.py``), as text."""
    return iso_timestamps(timestamps_ns).astype(np.str_)
