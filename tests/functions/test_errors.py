"""Every way a call to the ingestor can fail has one exception and one HTTP answer (functions/errors.py)."""

from __future__ import annotations

import grpc
import orjson
import pytest
from starlette.requests import Request

from functions.errors import TooManyStreams, error_response, ingestor_error

pytestmark = pytest.mark.anyio

REQUEST = Request({"type": "http", "method": "GET", "path": "/api/v1/status", "headers": []})

# (status code, on a live stream, HTTP status, detail, Retry-After): what README's API section promises.
ANSWERS = [
    (grpc.StatusCode.UNAVAILABLE, False, 503, "the ingestor is unavailable", None),
    (grpc.StatusCode.DEADLINE_EXCEEDED, False, 504, "the ingestor did not answer in time", None),
    (grpc.StatusCode.INVALID_ARGUMENT, False, 422, "what was wrong", None),
    (grpc.StatusCode.OUT_OF_RANGE, False, 422, "what was wrong", None),
    (grpc.StatusCode.ALREADY_EXISTS, False, 422, "what was wrong", None),
    (grpc.StatusCode.FAILED_PRECONDITION, False, 409, "what was wrong", None),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, False, 507, "what was wrong", None),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, True, 503, "what was wrong", "5"),
    (grpc.StatusCode.INVALID_ARGUMENT, True, 422, "what was wrong", None),
    (grpc.StatusCode.UNAVAILABLE, True, 503, "the ingestor is unavailable", None),
    (grpc.StatusCode.INTERNAL, False, 502, "the ingestor failed (INTERNAL)", None),
    (grpc.StatusCode.UNAUTHENTICATED, False, 502, "the ingestor failed (UNAUTHENTICATED)", None),
    (grpc.StatusCode.UNKNOWN, True, 502, "the ingestor failed (UNKNOWN)", None),
]


@pytest.mark.parametrize(("code", "live", "status", "detail", "retry_after"), ANSWERS)
async def test_each_failure_has_its_answer(
    code: grpc.StatusCode, live: bool, status: int, detail: str, retry_after: str | None
) -> None:
    response = await error_response(REQUEST, ingestor_error(code, "what was wrong", live=live))
    assert (response.status_code, orjson.loads(response.body)) == (status, {"detail": detail})
    assert response.headers.get("retry-after") == retry_after


async def test_a_refusal_without_details_names_its_code() -> None:
    response = await error_response(REQUEST, ingestor_error(grpc.StatusCode.INVALID_ARGUMENT, None))
    assert (response.status_code, orjson.loads(response.body)) == (422, {"detail": "INVALID_ARGUMENT"})


async def test_too_many_streams_here_is_a_503_to_retry() -> None:
    response = await error_response(REQUEST, TooManyStreams("100 streams are open"))
    assert (response.status_code, orjson.loads(response.body)) == (503, {"detail": "100 streams are open"})
    assert response.headers["retry-after"] == "5"
