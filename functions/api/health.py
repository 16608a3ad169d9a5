"""GET /health: the function's liveness."""

from __future__ import annotations

from fastapi import APIRouter

from functions.schemas import HealthResponse

router = APIRouter()


@router.get("/health", response_model=HealthResponse, summary="Liveness of the function")
async def health() -> HealthResponse:
    """Answers without touching the ingestor."""
    return HealthResponse(status="healthy")
