"""GET /processed-data: per-category aggregates, optionally per window and with extra statistics."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response

from functions.aggregate_params import (
    EmitParam,
    FillParam,
    GraceParam,
    SessionGapParam,
    StatsParam,
    StepParam,
    WindowParam,
    parse_stats,
    window_spec,
)
from functions.deps import Client, Settings
from functions.filters import CategoryParam, SinceParam, UntilParam, reading_query
from functions.formats import MEDIA_TYPES, aggregates_bytes, negotiate
from functions.partials import aggregate_partials, by_category_records, key_ns_for, mergeable
from functions.processing import (
    AGGREGATE_COLUMNS,
    TooManyGroups,
    aggregate,
    aggregate_by_category,
    aggregate_records,
    processed_records,
)
from functions.readings import Readings
from functions.responses import file_response, json_response
from functions.schemas import INGESTOR_ERRORS, CategoryStats, WindowedStats
from functions.validation import request_error

router = APIRouter()

MAX_PROCESSED_OBJECTS = 10_000

RowsFormatParam = Annotated[
    Literal["json", "csv", "ndjson", "parquet", "arrow"] | None,
    Query(alias="format", description="The rows as json (default), csv, ndjson, parquet or arrow (or by Accept)"),
]
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]


@router.get(
    "/processed-data",
    response_model=list[CategoryStats] | list[WindowedStats],
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}, **INGESTOR_ERRORS},
)
async def processed_data(
    client: Client,
    settings: Settings,
    category: CategoryParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    window: WindowParam = None,
    step: StepParam = None,
    session_gap: SessionGapParam = None,
    grace: GraceParam = None,
    emit: EmitParam = None,
    fill: FillParam = None,
    stats: StatsParam = None,
    format_name: RowsFormatParam = None,
    accept: AcceptHeader = None,
) -> Response:
    """Mean, count and latest event time per category over every buffered (matching) reading, sorted
    by category; with ``window`` (tumbling, or hopping with ``step``) or ``session_gap``, per window
    and category, sorted by window then category; with ``grace`` or ``emit``, whether each window is
    closed; with ``fill``, empty windows too; with ``stats``, the extra statistics after the others."""
    query = reading_query(category, since, until)
    windows = window_spec(query, window, step, session_gap, grace, emit, fill)
    extra = parse_stats(stats) if stats is not None else []
    rows_format = negotiate(format_name, accept, "json")
    # Partials where they answer exactly (functions/partials.py), else every matching reading.
    key_ns = key_ns_for(windows)
    partials = None
    if settings.aggregate_pushdown and mergeable(windows, extra):
        partials = await client.aggregate_partials(query, key_ns)  # None from an older ingestor
    readings = Readings.empty()
    if partials is None:
        if query.selects_all:
            readings = await client.export_readings(late_flags="late" in extra)
        else:
            readings, _ = await client.select_readings(query, late_flags="late" in extra)
    if windows is None and not extra and rows_format == "json":
        if partials is not None:
            return json_response(by_category_records(partials))
        return json_response(processed_records(aggregate_by_category(readings)))
    try:
        if partials is None:
            aggregates = aggregate(readings, stats=extra, max_groups=MAX_PROCESSED_OBJECTS, windows=windows)
        else:
            aggregates = aggregate_partials(
                partials, key_ns, windows=windows, stats=extra, max_groups=MAX_PROCESSED_OBJECTS
            )
    except TooManyGroups as error:
        where = "session_gap" if session_gap is not None else "window"
        raise request_error(
            ("query", where),
            f"{error}: ask for a wider window or a narrower range (category, since, until)",
            session_gap if session_gap is not None else window,
        ) from None
    records = aggregate_records(aggregates, extra)
    if rows_format == "json":
        return json_response(records)
    keys = [*AGGREGATE_COLUMNS]
    keys += ["window_start", "window_end"] if windows is not None else []
    keys += ["closed"] if windows is not None and windows.says_closed else []
    return file_response(
        rows_format, aggregates_bytes(rows_format, aggregates, records, keys + extra), "processed-data"
    )
