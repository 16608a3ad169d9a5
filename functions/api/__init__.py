"""The public HTTP API under /api/v1, one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from functions.api import aggregates, health, ingestion, readings, stream

router = APIRouter(prefix="/api/v1")
for resource in (health, ingestion, readings, aggregates, stream):
    router.include_router(resource.router)
