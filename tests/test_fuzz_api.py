"""Property-based fuzzing of the HTTP API from its own OpenAPI schema, in process, against a real ingestor.

schemathesis generates valid and invalid requests for every operation of the schema and checks each
answer: no 5xx, status codes, content types and bodies as documented, invalid input refused with a
4xx, and validation errors in FastAPI's documented shape. The example budget is fixed and the
generation derandomized, so a run is fast and repeats itself exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from functions.app import create_app
from functions.settings import FunctionSettings
from tests.harness import ThreadedIngestor

EXAMPLES_PER_MODE = 80

API_TOKEN = "fuzz-token"

# The schema depends on the code and on whether a token is required, not on where the ingestor is.
SCHEMAS = {
    "open": schemathesis.openapi.from_dict(create_app(FunctionSettings()).openapi()),
    "token": schemathesis.openapi.from_dict(create_app(FunctionSettings(api_token=API_TOKEN)).openapi()),
}


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
        case.validate_response(response)
        assert response.status_code < 500, response.text
        assert "Traceback" not in response.text
        if response.status_code == 422:
            assert_fastapi_validation_error(response.json())
        seen.add((case.method, case.path, response.status_code))

    check()
    # The run really covered the API: every operation was called.
    operations = {(method.upper(), path) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {(method, path) for method, path, _ in seen} >= (
        operations if mode is schemathesis.GenerationMode.POSITIVE else {("GET", "/api/v1/raw-data")}
    )
