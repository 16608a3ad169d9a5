"""The public HTTP API under /api/v1, one router per resource."""

from __future__ import annotations

from fastapi import FastAPI

from functions.api import aggregate_stream, aggregates, export, health, history, ingestion, readings, stream

PREFIX = "/api/v1"


RESOURCES = (health, ingestion, readings, aggregates, history, export, stream, aggregate_stream)


def route_templates() -> dict[int, str]:
    """The full path template of each API route, by the identity of the route object FastAPI puts in
    a request's scope (the router's own, whose ``path`` lacks the prefix)."""
    return {id(route): PREFIX + route.path for resource in RESOURCES for route in resource.router.routes}


def include_api(app: FastAPI) -> None:
    """Add each resource's routes to ``app`` under /api/v1.

    Straight onto the app: FastAPI builds a route anew for every router it is included in, and a
    router of routers would build each (its response models' validators too) once more at import.
    """
    for resource in RESOURCES:
        app.include_router(resource.router, prefix=PREFIX)
