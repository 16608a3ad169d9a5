"""Property-based fuzzing of the HTTP API from its own OpenAPI schema, in process, against a real ingestor.

schemathesis generates valid and invalid requests for every operation of the schema and checks each
answer: no 5xx, status codes, content types and bodies as documented, invalid input refused with a
4xx, and validation errors in FastAPI's documented shape. The example budget is fixed and the
generation derandomized, so a run is fast and repeats itself exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup

from functions.app import create_app
from functions.filters import CATEGORY_PATTERN
from functions.settings import FunctionSettings
from tests.harness import ThreadedIngestor

EXAMPLES_PER_MODE = 80

API_TOKEN = "fuzz-token"

# Refusing a request for its size (413: over 10,000 readings, over the body limit) is refusing it too.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429],
            }
        }
    }
)


def load_schema(settings: FunctionSettings) -> schemathesis.openapi.OpenApiSchema:
    # /stream never ends by design: it has tests of its own (tests/test_stream.py).
    return schemathesis.openapi.from_dict(create_app(settings).openapi(), config=CONFIG).exclude(path="/api/v1/stream")


# The schema depends on the code and on whether a token is required, not on where the ingestor is.
SCHEMAS = {"open": load_schema(FunctionSettings()), "token": load_schema(FunctionSettings(api_token=API_TOKEN))}


@pytest.fixture(scope="module")
def fuzzed_ingestor() -> Iterator[ThreadedIngestor]:
    server = ThreadedIngestor(capacity=5000, rate_hz=200)
    yield server
    server.close()


def assert_fastapi_validation_error(body: object) -> None:
    """FastAPI's HTTPValidationError: ``{"detail": [{"loc": [...], "msg": str, "type": str}, ...]}``."""
    assert isinstance(body, dict)
    assert isinstance(body["detail"], list)
    assert body["detail"]
    for error in body["detail"]:
        assert isinstance(error["loc"], list)
        assert error["loc"][0] in {"query", "path", "header", "cookie", "body"}
        assert isinstance(error["msg"], str)
        assert error["msg"]
        assert isinstance(error["type"], str)


# Rules the OpenAPI schema cannot state, so a schema-valid request may still break them: since after
# until, a window longer than a day or giving too many objects, an unknown statistic, a page token
# that this deployment did not sign, a batch over the count or size limit, a conflicting start.
SEMANTIC_422_LOCATIONS = {("query", "since"), ("query", "window"), ("query", "stats"), ("body",)}


def is_a_category_that_serialized_valid(case: schemathesis.Case, failure: BaseException) -> bool:
    """A "schema-violating" category (false, 0.35) that is a valid category name once in the query string."""
    if not isinstance(failure, AcceptedNegativeData) or "parameter `category`" not in str(failure):
        return False
    values = (case.query or {}).get("category")
    values = values if isinstance(values, list) else [values]
    return all(re.fullmatch(CATEGORY_PATTERN, str(value).lower()) for value in values)


def assert_accepted_or_semantically_refused(case: schemathesis.Case, status: int, body: object) -> None:
    """What schemathesis' positive-data check asks, less the refusals listed above."""
    if status < 400 or status in (401, 404, 409):
        return
    assert isinstance(body, dict), body
    if status == 422:
        locations = {tuple(error["loc"][:2]) if error["loc"][0] == "query" else ("body",) for error in body["detail"]}
        assert locations <= SEMANTIC_422_LOCATIONS, body
    elif status == 400:
        assert "page_token" in body["detail"] or "page token" in body["detail"], body
    elif status == 413:
        assert (case.method, case.path) == ("POST", "/api/v1/readings"), body
    else:
        raise AssertionError(f"schema-valid {case.method} {case.path} refused with {status}: {body}")


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
@pytest.mark.parametrize("guard", SCHEMAS.keys())
def test_every_operation_answers_as_documented(
    fuzzed_ingestor: ThreadedIngestor, guard: str, mode: schemathesis.GenerationMode
) -> None:
    schema = SCHEMAS[guard]
    token = API_TOKEN if guard == "token" else None
    fuzzed_app: FastAPI = create_app(FunctionSettings(ingestor_address=fuzzed_ingestor.address, api_token=token))
    seen: set[tuple[str, str, int]] = set()

    @settings(
        max_examples=EXAMPLES_PER_MODE,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=schema.as_strategy(mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call(app=fuzzed_app)
        try:
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except FailureGroup as group:
            if any(not is_a_category_that_serialized_valid(case, failure) for failure in group.exceptions):
                raise
        if mode is schemathesis.GenerationMode.POSITIVE:
            assert_accepted_or_semantically_refused(case, response.status_code, response.json())
        assert response.status_code < 500, response.text
        assert "Traceback" not in response.text
        if response.status_code == 422:
            assert_fastapi_validation_error(response.json())
        seen.add((case.method, case.path, response.status_code))

    check()
    # The run really covered the API: every operation was called.
    operations = {
        (method.upper(), path)
        for path, item in schema.raw_schema["paths"].items()
        for method in item
        if path != "/api/v1/stream"
    }
    assert {(method, path) for method, path, _ in seen} >= (
        operations if mode is schemathesis.GenerationMode.POSITIVE else {("GET", "/api/v1/raw-data")}
    )
