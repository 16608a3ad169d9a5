"""The /processed-data parameters beyond the filter: the window length and the extra statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from functions.processing import EXTRA_STATS
from functions.validation import request_error

# At most 100 digits: Python refuses to convert a string of more than 4,300 digits to an int (a
# ValueError, a 500 with a traceback), and anything past 5 digits is longer than a day anyway.
WINDOW_PATTERN = r"^[1-9][0-9]{0,99}(s|m|h|d)$"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

WindowParam = Annotated[
    str | None,
    Query(pattern=WINDOW_PATTERN, description="Tumbling event-time windows aligned to the epoch, 1s to 1d"),
]
StatsParam = Annotated[
    str | None,
    Query(description=f"Extra statistics, comma-separated: {', '.join(EXTRA_STATS)}", examples=["min,max,p99"]),
]


def window_length_ns(window: str) -> int:
    """The length of a window that matched WINDOW_PATTERN; a 422 beyond 1s to 1d."""
    seconds = int(window[:-1]) * _UNIT_SECONDS[window[-1]]
    if not 1 <= seconds <= 86_400:
        raise request_error(("query", "window"), "window must be between 1s and 1d", window)
    return seconds * 1_000_000_000


def parse_stats(stats: str) -> list[str]:
    """The statistics asked for, in order, each once; a 422 naming any unknown one."""
    names = list(dict.fromkeys(name.strip() for name in stats.split(",") if name.strip()))
    unknown = [name for name in names if name not in EXTRA_STATS]
    if unknown:
        raise request_error(
            ("query", "stats"), f"unknown statistics {', '.join(unknown)}; allowed: {', '.join(EXTRA_STATS)}", stats
        )
    return names
