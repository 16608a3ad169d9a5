"""Raw readings: pages of them out (GET /raw-data), batches of them in (POST /readings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import Response

from functions import telemetry
from functions.client import IngestorClient
from functions.deps import Client, Settings
from functions.filters import (
    AfterSequenceParam,
    CategoryParam,
    ReadingQuery,
    SinceParam,
    UntilParam,
    reading_query,
)
from functions.links import next_link
from functions.paging import Cursor, Direction, PageTokenError, decode_page_token, encode_page_token
from functions.readings import raw_records
from functions.responses import json_response
from functions.schemas import (
    BACKED_UP,
    INGESTOR_ERRORS,
    NO_ROOM_TO_WRITE,
    NOT_JSON,
    RAW_DATA_HEADERS,
    AcceptedResponse,
    ErrorResponse,
    RawReading,
    ValidationErrorResponse,
    readings_request_body,
)
from functions.validation import request_error
from functions.writes import TooLarge, parse_readings

router = APIRouter()

MAX_RAW_LIMIT = 10_000


@router.get(
    "/raw-data",
    response_model=list[RawReading],
    responses={
        200: {"headers": RAW_DATA_HEADERS},
        400: {"model": ErrorResponse, "description": "page_token altered, or issued for other filters"},
        **INGESTOR_ERRORS,
    },
)
async def raw_data(
    request: Request,
    client: Client,
    settings: Settings,
    limit: Annotated[int, Query(ge=1, le=MAX_RAW_LIMIT, description="Page size: readings per page")] = 1000,
    category: CategoryParam = None,
    since: SinceParam = None,
    until: UntilParam = None,
    page_token: Annotated[
        str | None, Query(description='From the `rel="next"` Link of the previous page', max_length=200)
    ] = None,
    after_sequence: AfterSequenceParam = None,
) -> Response:
    """Readings oldest first. Without ``since``, the newest ``limit`` matches, and the next page the
    ones before them; with ``since``, the oldest ``limit`` matches at or after it, and the next page
    the ones after them. The next page is announced in a ``Link: <...>; rel="next"`` header.
    With ``after_sequence`` (a poller's cursor), the oldest ``limit`` matches numbered above it,
    and the cursor of the next call in the ``Next-After-Sequence`` header instead of a Link."""
    query = reading_query(category, since, until)
    if after_sequence is not None:
        if page_token:
            raise request_error(
                ("query", "after_sequence"), "after_sequence cannot be combined with page_token", after_sequence
            )
        return await _readings_after(client, query, limit, after_sequence)
    key = settings.page_token_key()
    direction = Direction.BACKWARD if query.since_ns is None else Direction.FORWARD
    cursor = None
    if page_token:
        try:
            cursor = decode_page_token(page_token, query.digest(), key)
        except PageTokenError as error:
            raise HTTPException(400, str(error)) from None
    if direction is Direction.FORWARD:
        readings, next_sequence = await client.select_readings(
            query, limit=limit, after_sequence=cursor.sequence if cursor else 0, oldest_first=True
        )
    else:
        readings, next_sequence = await client.select_readings(
            query, limit=limit, before_sequence=cursor.sequence if cursor else None
        )
    telemetry.readings_returned(len(readings))
    response = json_response(raw_records(readings))
    if next_sequence is not None:
        token = encode_page_token(Cursor(direction, next_sequence), query.digest(), key)
        response.headers["Link"] = next_link(request, token)
    return response


async def _readings_after(client: IngestorClient, query: ReadingQuery, limit: int, after_sequence: int) -> Response:
    """The oldest ``limit`` matches numbered above ``after_sequence``, and the number to poll after next.

    The selection stops below ``total_ingested`` as it was just before it: every number below that
    one was then looked at, so the cursor can move past them all, matching or not, while readings
    that arrive meanwhile are left for the next call.
    """
    newest = (await client.get_status()).total_ingested
    readings, next_sequence = await client.select_readings(
        query, limit=limit, after_sequence=after_sequence + 1, before_sequence=newest, oldest_first=True
    )
    telemetry.readings_returned(len(readings))
    response = json_response(raw_records(readings))
    cursor = next_sequence - 1 if next_sequence is not None else newest - 1
    response.headers["Next-After-Sequence"] = str(cursor)
    return response


@router.post(
    "/readings",
    status_code=202,
    response_model=AcceptedResponse,
    openapi_extra={"requestBody": readings_request_body()},
    responses={
        **NOT_JSON,
        413: {"model": ErrorResponse, "description": "Over 2 MiB or over 10,000 readings"},
        422: {
            "model": ValidationErrorResponse | ErrorResponse,
            "description": "Bad items, each one's index in loc; or an Idempotency-Key used before for other "
            "readings, named in detail",
        },
        **NO_ROOM_TO_WRITE,
        **INGESTOR_ERRORS,
        **BACKED_UP,
    },
)
async def write_readings(
    request: Request,
    client: Client,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=r"^[\x21-\x7e]{1,128}$",
            description="Makes a retry safe: a batch with a key already stored (or being stored) is "
            "acknowledged again, not stored twice; the key with other readings is a 422 (keys are "
            "remembered for INGESTOR_BATCH_ID_WINDOW batches)",
            examples=["sensor-17-batch-000042"],
        ),
    ] = None,
) -> Response:
    """Store real readings, all or nothing; they show up in raw and processed data like generated ones.
    A retry with the same ``Idempotency-Key`` answers the first acknowledgement again, with
    ``Idempotent-Replayed: true``."""
    body = await request.body()  # the app's body limit (MAX_BODY_BYTES, 2 MiB) already applies
    try:
        readings = parse_readings(body)
    except TooLarge as error:
        raise HTTPException(413, str(error)) from None
    result = await client.write_readings(readings, batch_id=idempotency_key or "")
    if not result.duplicate:
        telemetry.readings_written(result.accepted)
    response = json_response({"accepted": result.accepted}, 202)
    if result.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response
