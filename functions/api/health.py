"""GET /health: the function's liveness; GET /ready: whether the ingestor answers too."""

from __future__ import annotations

from fastapi import APIRouter

from functions.deps import Client
from functions.schemas import ErrorResponse, HealthResponse

router = APIRouter()


@router.get("/health", response_model=HealthResponse, summary="Liveness of the function")
async def health() -> HealthResponse:
    """Answers without touching the ingestor."""
    return HealthResponse(status="healthy")


@router.get(
    "/ready",
    response_model=HealthResponse,
    summary="Readiness: the ingestor answers its health check",
    responses={503: {"model": ErrorResponse, "description": "The ingestor is not ready; the detail says why"}},
)
async def ready(client: Client) -> HealthResponse:
    """200 once the ingestor answers SERVING to its gRPC health check within the connect timeout
    (INGESTOR_CONNECT_TIMEOUT_S); 503 with the reason otherwise."""
    await client.check_ready()
    return HealthResponse(status="ready")
