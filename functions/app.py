"""Composition: the FastAPI app (for uvicorn) and its Mangum handler (for AWS Lambda).

The app knows nothing of Lambda; the handler is a thin adapter around it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from mangum import Mangum

from functions.client import (
    IngestorError,
    IngestorRejected,
    IngestorTimeout,
    IngestorUnavailable,
    close_shared_channel,
)
from functions.gateway import GatewayPrefix
from functions.routes import router

_STATUS_FOR_ERROR: tuple[tuple[type[IngestorError], int], ...] = (
    (IngestorUnavailable, 503),
    (IngestorTimeout, 504),
    (IngestorRejected, 422),
)


async def ingestor_error(request: Request, error: Exception) -> JSONResponse:
    status = next((code for kind, code in _STATUS_FOR_ERROR if isinstance(error, kind)), 502)
    return JSONResponse({"detail": str(error)}, status_code=status)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Under uvicorn, shutdown closes the channel. Mangum runs with lifespan off: on Lambda the
    # channel must outlive each invocation.
    yield
    await close_shared_channel()


def create_app() -> FastAPI:
    app = FastAPI(
        title="Real-time data pipeline",
        version="1.0.0",
        description="Start and stop ingestion, read raw readings and per-category aggregates.",
        lifespan=lifespan,
    )
    app.include_router(router)
    app.add_exception_handler(IngestorError, ingestor_error)
    return app


app = create_app()
handler = Mangum(GatewayPrefix(app), lifespan="off")
