"""The generator: start it, stop it, and its status with the buffer's accounting."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from functions.deps import Client
from functions.schemas import (
    INGESTOR_ERRORS,
    NO_ROOM,
    NOT_JSON,
    ErrorResponse,
    MessageResponse,
    StartConfig,
    StatusResponse,
)

router = APIRouter()


@router.post(
    "/start-ingestion",
    response_model=MessageResponse,
    responses={
        **NOT_JSON,
        409: {"model": ErrorResponse, "description": "Running with another configuration"},
        **NO_ROOM,
        **INGESTOR_ERRORS,
    },
)
async def start_ingestion(client: Client, config: Annotated[StartConfig | None, Body()] = None) -> MessageResponse:
    """Start generating readings, with the ingestor's defaults or the configuration in the optional body.
    Idempotent: a generator running with the same (or no) configuration is left as it is."""
    if config is None:
        started = await client.start_ingestion()
    else:
        started = await client.start_ingestion(
            rate_hz=config.rate_hz, categories=config.categories or (), seed=config.seed
        )
    return MessageResponse(message="Data ingestion started" if started else "Data ingestion already running")


@router.post("/stop-ingestion", response_model=MessageResponse, responses=INGESTOR_ERRORS)
async def stop_ingestion(client: Client) -> MessageResponse:
    """Stop generating readings, keeping the buffered ones. Idempotent."""
    stopped = await client.stop_ingestion()
    return MessageResponse(message="Data ingestion stopped" if stopped else "Data ingestion already stopped")


@router.get("/status", response_model=StatusResponse, response_model_exclude_unset=True, responses=INGESTOR_ERRORS)
async def status(client: Client) -> StatusResponse:
    """The ingestor's generator state and buffer accounting, and the configuration of the current (or
    last) run: ``rate_hz`` always, ``categories`` and ``seed`` when it was started with a body; in
    durable mode also ``durable`` and the data directory's size; while the disk holds the generator
    back, the rate it achieves and why; ``disk_full`` while the data directory is full. ``late``
    counts readings stored with an event time older than the newest stored before them, and
    ``late_by_category`` the same per category in use: both only once there are late readings.
    ``archive`` when readings are archived (``INGESTOR_ARCHIVE_URL``): what is archived, what waits,
    what was evicted before it was archived, and why publishing fails while it does."""
    current = await client.get_status()
    answer: dict[str, object] = {
        "running": current.running,
        "total_ingested": current.total_ingested,
        "buffered": current.buffered,
        "evicted": current.evicted,
        "capacity": current.capacity,
        "rate_hz": current.rate_hz,
    }
    if current.configured:
        answer.update(categories=list(current.categories), seed=current.seed if current.HasField("seed") else None)
    if current.durable:
        answer.update(durable=True, data_dir_bytes=current.data_dir_bytes)
    if current.generator_error:
        answer.update(generator_error=current.generator_error)
    if current.generator_held_back:
        answer.update(achieved_rate_hz=current.achieved_rate_hz, generator_held_back=current.generator_held_back)
    if current.disk_full:
        answer.update(disk_full=True)
    if current.late:
        answer.update(late=current.late, late_by_category=dict(sorted(current.late_by_category.items())))
    if current.archiving:
        archive: dict[str, object] = {
            "archived": current.archived,
            "pending": current.archive_pending,
            "evicted_unarchived": current.evicted_unarchived,
        }
        if current.archive_error:
            archive["error"] = current.archive_error
        answer.update(archive=archive)
    return StatusResponse.model_validate(answer)
