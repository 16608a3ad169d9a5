"""GET /processed-data: per-category aggregates, optionally per window and with extra statistics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from functions.aggregate_params import StatsParam, WindowParam, parse_stats, window_length_ns
from functions.deps import Client
from functions.filters import CategoryParam, SinceParam, UntilParam, reading_query
from functions.processing import TooManyGroups, aggregate, aggregate_by_category, aggregate_records, processed_records
from functions.responses import json_response
from functions.schemas import INGESTOR_ERRORS, CategoryStats, WindowedStats
from functions.validation import request_error

router = APIRouter()

MAX_PROCESSED_OBJECTS = 10_000


@router.get(
    "/processed-data",
    response_model=list[CategoryStats] | list[WindowedStats],
    responses=INGESTOR_ERRORS,
)
async def processed_data(
    client: Client,
    category: CategoryParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    window: WindowParam = None,
    stats: StatsParam = None,
) -> Response:
    """Mean, count and latest event time per category over every buffered (matching) reading, sorted
    by category; with ``window``, per window and category, sorted by window then category; with
    ``stats``, the extra statistics after the original four keys."""
    query = reading_query(category, since, until)
    window_ns = window_length_ns(window) if window else None
    extra = parse_stats(stats) if stats is not None else []
    if query.selects_all:
        readings = await client.export_readings()
    else:
        readings, _ = await client.select_readings(query)
    if window_ns is None and not extra:
        return json_response(processed_records(aggregate_by_category(readings)))
    try:
        aggregates = aggregate(readings, window_ns=window_ns, stats=extra, max_groups=MAX_PROCESSED_OBJECTS)
    except TooManyGroups as error:
        raise request_error(
            ("query", "window"), f"{error}: ask for a wider window or a narrower range (category, since, until)", window
        ) from None
    return json_response(aggregate_records(aggregates, extra))
