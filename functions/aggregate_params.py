"""The /processed-data parameters beyond the filter: the window (its kind, grace, emit, fill) and the statistics."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query

from functions.filters import ReadingQuery
from functions.processing import EXTRA_STATS, WindowSpec
from functions.validation import request_error

# At most 100 digits: Python refuses to convert a string of more than 4,300 digits to an int (a
# ValueError, a 500 with a traceback), and anything past 5 digits is longer than a day anyway.
WINDOW_PATTERN = r"^[1-9][0-9]{0,99}(s|m|h|d)$"
GRACE_PATTERN = r"^[0-9]{1,100}(s|m|h|d)$"
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
DAY_S = 86_400

WindowParam = Annotated[
    str | None,
    Query(pattern=WINDOW_PATTERN, description="Event-time windows of this length aligned to the epoch, 1s to 1d"),
]
StepParam = Annotated[
    str | None,
    Query(
        pattern=WINDOW_PATTERN,
        description="Hopping windows: one starts every step (1s to 1d, at most window, window a multiple of it)",
        examples=["10s"],
    ),
]
SessionGapParam = Annotated[
    str | None,
    Query(
        pattern=WINDOW_PATTERN,
        description="Session windows per category: readings closer than this gap (1s to 1d) share one; not with window",
        examples=["30s"],
    ),
]
GraceParam = Annotated[
    str | None,
    Query(
        pattern=GRACE_PATTERN,
        description="0s to 1d (default 0s): a window is closed once window_end + grace <= the newest event time",
        examples=["5s"],
    ),
]
EmitParam = Annotated[
    Literal["update", "final"] | None,
    Query(description="final: closed windows only; update (default): every window"),
]
FillParam = Annotated[
    Literal["null", "zero", "previous", "linear"] | None,
    Query(description="Empty windows (tumbling and hopping) appear, their values null, 0, carried or interpolated"),
]
StatsParam = Annotated[
    str | None,
    Query(description=f"Extra statistics, comma-separated: {', '.join(EXTRA_STATS)}", examples=["min,max,p99"]),
]


def duration_ns(value: str, name: str, minimum_s: int = 1) -> int:
    """A duration that matched its pattern, in ns; a 422 naming ``name`` outside ``minimum_s`` to 1d."""
    seconds = int(value[:-1]) * _UNIT_SECONDS[value[-1]]
    if not minimum_s <= seconds <= DAY_S:
        raise request_error(("query", name), f"{name} must be between {minimum_s}s and 1d", value)
    return seconds * 1_000_000_000


def window_length_ns(window: str) -> int:
    """The length of a window that matched WINDOW_PATTERN; a 422 beyond 1s to 1d."""
    return duration_ns(window, "window")


def window_spec(
    query: ReadingQuery,
    window: str | None,
    step: str | None = None,
    session_gap: str | None = None,
    grace: str | None = None,
    emit: str | None = None,
    fill: str | None = None,
) -> WindowSpec | None:
    """The windows asked for (None: per category only), each rule broken a 422 naming its parameter."""
    if session_gap is not None and window is not None:
        raise request_error(
            ("query", "session_gap"), "session_gap and window are different kinds: give one", session_gap
        )
    length = window_length_ns(window) if window is not None else None
    gap = duration_ns(session_gap, "session_gap") if session_gap is not None else None
    for name, value in (("step", step), ("fill", fill)):
        if value is not None and length is None:
            raise request_error(("query", name), f"{name} needs window (tumbling or hopping windows)", value)
    for name, value in (("grace", grace), ("emit", emit)):
        if value is not None and length is None and gap is None:
            raise request_error(("query", name), f"{name} needs window or session_gap", value)
    step_ns = None
    if step is not None:
        assert length is not None
        step_ns = duration_ns(step, "step")
        if step_ns > length or length % step_ns:
            raise request_error(("query", "step"), "step must divide window (and so be at most window)", step)
    if length is None and gap is None:
        return None
    return WindowSpec(
        length_ns=length,
        step_ns=step_ns,
        session_gap_ns=gap,
        grace_ns=duration_ns(grace, "grace", minimum_s=0) if grace is not None else None,
        final_only=emit == "final",
        fill=fill,
        since_ns=query.since_ns,
        until_ns=query.until_ns,
    )


def parse_stats(stats: str) -> list[str]:
    """The statistics asked for, in order, each once; a 422 naming any unknown one."""
    names = list(dict.fromkeys(name.strip() for name in stats.split(",") if name.strip()))
    unknown = [name for name in names if name not in EXTRA_STATS]
    if unknown:
        raise request_error(
            ("query", "stats"), f"unknown statistics {', '.join(unknown)}; allowed: {', '.join(EXTRA_STATS)}", stats
        )
    return names
