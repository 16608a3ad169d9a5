"""GET /history: per-window aggregates from the ingestor's rollups, readings long evicted included."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query
from fastapi.responses import Response

from functions.aggregate_params import StatsParam, duration_ns, parse_stats
from functions.api.aggregates import MAX_PROCESSED_OBJECTS
from functions.deps import Client
from functions.filters import CategoryParam, SinceParam, UntilParam, reading_query
from functions.partials import MERGEABLE_STATS, aggregate_partials
from functions.processing import TooManyGroups, WindowSpec, aggregate_records
from functions.responses import json_response
from functions.schemas import INGESTOR_ERRORS, WindowedStats
from functions.timestamps import format_timestamps
from functions.validation import request_error

router = APIRouter()

MINUTE_NS = 60 * 1_000_000_000
BUFFER_OLDEST_HEADER = "Buffer-Oldest-Event-Time"
HISTORY_WINDOW_PATTERN = r"^[1-9][0-9]{0,99}(m|h|d)$"

HistoryWindowParam = Annotated[
    str,
    Query(
        pattern=HISTORY_WINDOW_PATTERN,
        description="Event-time windows of this length aligned to the epoch: whole minutes, 1m to 1d",
        examples=["1h"],
    ),
]


@router.get(
    "/history",
    response_model=list[WindowedStats],
    responses={
        200: {
            "headers": {
                BUFFER_OLDEST_HEADER: {
                    "description": "The oldest event time the ingestor's buffer holds (absent when it holds "
                    "none): /processed-data covers from there on, /history also before",
                    "schema": {"type": "string", "format": "date-time"},
                }
            }
        },
        **INGESTOR_ERRORS,
    },
)
async def history(
    client: Client,
    window: HistoryWindowParam,
    category: CategoryParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    stats: StatsParam = None,
) -> Response:
    """Per window and category, the object ``/processed-data?window=`` gives, computed from the
    ingestor's rollups (per category and minute, kept for ``INGESTOR_ROLLUP_RETENTION`` after the
    readings are evicted) instead of the buffered readings. ``since`` and ``until`` select whole
    minutes (``since`` rounded down to its minute). ``stats``: min, max, sum, std, first_timestamp."""
    query = reading_query(category, since, until)
    length_ns = duration_ns(window, "window", minimum_s=60)
    extra = parse_stats(stats) if stats is not None else []
    unmergeable = [name for name in extra if name not in MERGEABLE_STATS]
    if unmergeable:
        raise request_error(
            ("query", "stats"),
            f"history keeps min, max, sum, std and first_timestamp, not {', '.join(unmergeable)}: "
            "those need the readings (/processed-data)",
            stats,
        )
    windows = WindowSpec(length_ns=length_ns, since_ns=query.since_ns, until_ns=query.until_ns)
    try:
        # One row per category and window: the ingestor counts them before sending any.
        rows, buffer_oldest_ns = await client.get_history(query, length_ns // MINUTE_NS, MAX_PROCESSED_OBJECTS)
        aggregates = aggregate_partials(rows, length_ns, windows=windows, stats=extra, max_groups=MAX_PROCESSED_OBJECTS)
    except TooManyGroups as error:
        raise request_error(
            ("query", "window"), f"{error}: ask for a wider window or a narrower range (category, since, until)", window
        ) from None
    response = json_response(aggregate_records(aggregates, extra))
    if buffer_oldest_ns is not None:
        response.headers[BUFFER_OLDEST_HEADER] = str(format_timestamps(np.array([buffer_oldest_ns]))[0])
    return response
