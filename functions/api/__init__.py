"""The public HTTP API under /api/v1, one router per resource."""

from __future__ import annotations

from fastapi import FastAPI

from functions.api import aggregate_stream, aggregates, export, health, history, ingestion, readings, stream

PREFIX = "/api/v1"


def include_api(app: FastAPI) -> None:
    """Add each resource's routes to ``app`` under /api/v1.

    Straight onto the app: FastAPI builds a route anew for every router it is included in, and a
    router of routers would build each (its response models' validators too) once more at import.
    """
    for resource in (health, ingestion, readings, aggregates, history, export, stream, aggregate_stream):
        app.include_router(resource.router, prefix=PREFIX)
