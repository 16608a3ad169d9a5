"""GET /metrics: the process's metrics in Prometheus' text format, under uvicorn only.

Outside /api/v1 and the OpenAPI schema. Left out of the app on Lambda (``AWS_LAMBDA_FUNCTION_NAME``
set), where scraping one instance of many means nothing, and a 404 for any request Mangum hands
over. With API_TOKEN_FOR_READS it needs the token, like any read.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    if "aws.event" in request.scope:
        raise HTTPException(404, "Not Found")
    from functions.prometheus_metrics import CONTENT_TYPE, exposition  # loads prometheus_client

    return Response(exposition(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
