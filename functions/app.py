"""Composition: the FastAPI app (for uvicorn) and its Mangum handler (for AWS Lambda).

The app knows nothing of Lambda; the handler is a thin adapter around it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from starlette.types import ASGIApp

from functions import metrics_endpoint, pages
from functions.api import include_api
from functions.channel import close_shared_channel
from functions.deps import current_settings
from functions.errors import ERROR_HANDLERS
from functions.gateway import GatewayPrefix
from functions.headers import ResponseHeadersMiddleware
from functions.limits import BodySizeLimitMiddleware
from functions.logs import configure_logging, configure_server_logging
from functions.memory import retain_freed_memory
from functions.pages import OPENAPI_URL, open_page_paths
from functions.request_context import RequestContextMiddleware
from functions.security import ALWAYS_OPEN, SAFE_METHODS, BearerTokenMiddleware, needs_token
from functions.settings import FunctionSettings, get_settings
from functions.shutdown import ShutdownDeadlineMiddleware
from functions.validation import validation_error


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Under uvicorn, shutdown closes the channel. Mangum runs with lifespan off: on Lambda the
    # channel must outlive each invocation. Prometheus' metrics exist from the start (only uvicorn
    # serves them: the library is not loaded on Lambda).
    from functions.prometheus_metrics import prometheus_sink

    prometheus_sink()
    yield
    await close_shared_channel()


class PipelineApp(FastAPI):
    """FastAPI with the response headers' middleware around its whole stack: ``add_middleware`` stops
    inside ServerErrorMiddleware, whose 500s would go out without them."""

    def build_middleware_stack(self) -> ASGIApp:
        return ResponseHeadersMiddleware(super().build_middleware_stack())


def open_paths(app: FastAPI) -> frozenset[str]:
    """Route paths no token is asked for: /api/v1/health, and the pages (dashboard, documentation)
    with the files they load, which a browser opens without a token (the dashboard asks for it)
    and which describe the API, not its data."""
    docs = (app.docs_url, app.redoc_url, app.openapi_url)
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url if app.docs_url else None
    return ALWAYS_OPEN | open_page_paths() | {path for path in (*docs, oauth2_redirect) if path}


_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}


def documented_with_middleware(app: FastAPI, settings: FunctionSettings) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` that also documents what the middlewares answer: 413, and 401 with a token."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        guarded = settings.api_token is not None
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if method.upper() not in SAFE_METHODS:
                    responses["413"] = {"description": "The request body is too large", "content": _ERROR_BODY}
                if guarded and needs_token(method, path, settings.api_token_for_reads, open_paths(app)):
                    responses["401"] = {"description": "The bearer token is missing or wrong", "content": _ERROR_BODY}
                    operation["security"] = [{"bearerToken": []}]
        if guarded:
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["bearerToken"] = {"type": "http", "scheme": "bearer"}
        return schema

    return openapi


def on_lambda() -> bool:
    """Whether this process is a Lambda instance (the runtime sets the function's name)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def create_app(settings: FunctionSettings | None = None) -> FastAPI:
    """The app; ``settings`` replace the environment's for every route (tests use this)."""
    configured = settings or get_settings()
    configure_logging(configured.log_level)
    app = PipelineApp(
        title="Real-time data pipeline",
        version="1.0.0",
        description="Start and stop ingestion, read raw readings and per-category aggregates.",
        lifespan=lifespan,
        # The documentation's pages are the app's own (functions/pages.py), from vendored files.
        docs_url=None,
        redoc_url=None,
        openapi_url=OPENAPI_URL,
        exception_handlers={**ERROR_HANDLERS, RequestValidationError: validation_error},
    )
    include_api(app)
    app.include_router(pages.router)
    if configured.metrics and not on_lambda():
        app.include_router(metrics_endpoint.router)
    if settings is not None:

        async def given_settings() -> FunctionSettings:
            return settings

        app.dependency_overrides[current_settings] = given_settings
    # Added innermost first: request id (outermost of these; PipelineApp puts the response
    # headers around all), shutdown deadline, CORS, token, body limit, routes. The checks run
    # before any route, so an endpoint added later is covered without code of its own.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=configured.max_body_bytes)
    if configured.api_token is not None:
        app.add_middleware(
            BearerTokenMiddleware,
            token=configured.api_token.get_secret_value(),
            protect_reads=configured.api_token_for_reads,
            open_paths=open_paths(app),
        )
    if configured.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(configured.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(ShutdownDeadlineMiddleware, grace_s=configured.shutdown_grace_s)
    app.add_middleware(RequestContextMiddleware, metrics=configured.metrics)
    app.openapi = documented_with_middleware(app, configured)  # type: ignore[method-assign]
    return app


# Process-wide settings, made where the process starts serving (uvicorn or Lambda), not in
# create_app: the factory stays free of side effects. Plain `uvicorn functions.app:app` logs JSON
# only, and no access line of its own (it would carry query strings).
retain_freed_memory()
configure_server_logging()
app = create_app()
# NDJSON exports are text: Mangum base64-encodes any type it does not know as text.
asgi_handler = Mangum(
    GatewayPrefix(app), lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "application/x-ndjson"]
)


def _handler_with_metrics() -> Callable[[dict[str, Any], Any], Any]:
    if not get_settings().metrics:
        return asgi_handler
    from functions.lambda_metrics import with_metrics  # loads Powertools

    return with_metrics(asgi_handler)


_wrapped = _handler_with_metrics() if on_lambda() else None
"""On Lambda, Powertools loads with the module, in the init phase; elsewhere (tests, a local
invocation) at the first call, so that uvicorn never loads it."""


def handler(event: dict[str, Any], context: Any) -> Any:
    """The Lambda entry point: Mangum's, with the request's metrics flushed as CloudWatch EMF."""
    global _wrapped
    if _wrapped is None:
        _wrapped = _handler_with_metrics()
    return _wrapped(event, context)
