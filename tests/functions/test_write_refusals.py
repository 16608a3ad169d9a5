"""How the function tells the ingestor's refusals of a write apart (functions/errors.py): a queue
that is full for now (RESOURCE_EXHAUSTED with gRPC's retry pushback) is a 503 to retry after the
time the ingestor named; something that is full for good (the disk, the category dictionary: no
pushback) a 507; a batch id reused for other readings a 422 naming the key, while any other
FAILED_PRECONDITION stays a 409."""

from __future__ import annotations

import grpc
import orjson
import pytest
from starlette.requests import Request

from functions.errors import error_response, ingestor_error

pytestmark = pytest.mark.anyio

REQUEST = Request({"type": "http", "method": "POST", "path": "/api/v1/readings", "headers": []})
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("pushback_ms", "status", "retry_after"),
    [(None, 507, None), (1000, 503, "1"), (1, 503, "1"), (2500, 503, "3"), (0, 503, "1")],
)
async def test_resource_exhausted_is_a_503_only_with_a_retry_pushback(
    pushback_ms: int | None, status: int, retry_after: str | None
) -> None:
    error = ingestor_error(EXHAUSTED, "the disk does not keep up", retry_pushback_ms=pushback_ms)
    response = await error_response(REQUEST, error)
    assert (response.status_code, orjson.loads(response.body)) == (status, {"detail": "the disk does not keep up"})
    assert response.headers.get("retry-after") == retry_after


async def test_a_reused_key_is_a_422_naming_it_and_other_preconditions_stay_409() -> None:
    reused = ingestor_error(grpc.StatusCode.FAILED_PRECONDITION, "batch_id 'k' was used before", batch_id="k-9")
    response = await error_response(REQUEST, reused)
    assert response.status_code == 422
    assert orjson.loads(response.body)["detail"].startswith("Idempotency-Key 'k-9' was used before for other readings")
    conflict = ingestor_error(grpc.StatusCode.FAILED_PRECONDITION, "running with another configuration")
    response = await error_response(REQUEST, conflict)
    assert (response.status_code, orjson.loads(response.body)) == (
        409,
        {"detail": "running with another configuration"},
    )
