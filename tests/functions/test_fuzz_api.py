"""Property-based fuzzing of the HTTP API from its own OpenAPI schema, in process, against a real ingestor.

schemathesis generates valid and invalid requests for every operation of the schema and checks each
answer: no 5xx, status codes, content types and bodies as documented, invalid input refused with a
4xx, validation errors in FastAPI's documented shape, and no 404 from a documented route. With
API_TOKEN set, the requests carry the token, so they reach the operations instead of stopping at
the 401 (and schemathesis checks that the same request without it, or with a wrong one, is refused).
Each operation has its own example budget, and the generation is derandomized, so a run is fast
and repeats itself exactly.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup

from devtools.processes import ThreadedIngestor
from functions.app import create_app
from functions.filters import CATEGORY_PATTERN
from functions.settings import FunctionSettings
from tests.support.factories import MakeIngestor

# Property-based: seconds of generated requests.
pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 12

API_TOKEN = "fuzz-token"

# Refusing a request for its size (413: over 10,000 readings, over the body limit) is refusing it too;
# a 404 is not a refusal: every route fuzzed is documented, so it must exist.
CHECKS = {
    "negative_data_rejection": {
        "expected-statuses": [400, 401, 403, 405, 406, 409, 413, 415, 422, 428, 429],
    }
}
# The token for the schema's bearerToken scheme (documented when API_TOKEN is set), on every request.
AUTH = {"openapi": {"bearerToken": {"bearer": API_TOKEN}}}


def load_schema(app: FastAPI, token: str | None) -> schemathesis.openapi.OpenApiSchema:
    """The app's own schema, bound to the app: requests (and the checks' own probes) go to it."""
    config = SchemathesisConfig.from_dict({"checks": CHECKS, **({"auth": AUTH} if token else {})})
    # The event streams never end by design: they have tests of their own (tests/e2e/test_stream.py,
    # tests/functions/test_window_feed.py).
    return (
        schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        .exclude(path="/api/v1/stream")
        .exclude(path="/api/v1/stream/aggregates")
    )


# Whether API_TOKEN is set changes the schema (POSTs declare the bearer token) and what is checked.
GUARDS = {"open": None, "token": API_TOKEN}


@pytest.fixture(scope="module")
def fuzzed_ingestor(make_module_ingestor: MakeIngestor) -> ThreadedIngestor:
    return make_module_ingestor(capacity=5000, rate_hz=200)


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
# that this deployment did not sign, a batch over the count or size limit, a conflicting start; a
# step that does not divide the window, a session gap with a window, a grace, emit or fill without
# the window they need; raw-data's after_sequence with a page_token.
SEMANTIC_422_LOCATIONS = {
    ("query", "since"),
    ("query", "window"),
    ("query", "stats"),
    ("body",),
    *(("query", name) for name in ("step", "session_gap", "grace", "emit", "fill", "after_sequence")),
}


def is_negative_data_that_serialized_valid(response: schemathesis.Response, failure: BaseException) -> bool:
    """A "schema-violating" request that was valid as sent: each query parameter named invalid is a
    category that is a valid name once in the query string (false, 0.35), or was left out of the
    query string altogether (a null)."""
    named = re.search(r"Invalid component: parameters? (.+) in query", str(failure))
    if not isinstance(failure, AcceptedNegativeData) or named is None:
        return False
    sent = parse_qs(urlsplit(response.request.url).query, keep_blank_values=True)
    for name in re.findall(r"`([^`]+)`", named.group(1)):
        if name not in sent:
            continue
        if name != "category" or not all(re.fullmatch(CATEGORY_PATTERN, value) for value in sent[name]):
            return False
    return True


def assert_accepted_or_semantically_refused(case: schemathesis.Case, status: int, body: object) -> None:
    """What schemathesis' positive-data check asks, less the refusals listed above; 401 and 404 are
    not among them: the token is sent, and every documented route exists."""
    if status < 400 or status == 409:
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


def operations(schema: schemathesis.openapi.OpenApiSchema) -> list[schemathesis.APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def has_inputs(operation: schemathesis.APIOperation) -> bool:
    """Whether there is anything to make invalid: parameters, a body, or the token."""
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody") or definition.get("security"))


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
@pytest.mark.parametrize("guard", GUARDS.keys())
def test_every_operation_answers_as_documented(
    fuzzed_ingestor: ThreadedIngestor, guard: str, mode: schemathesis.GenerationMode
) -> None:
    token = GUARDS[guard]
    fuzzed_app: FastAPI = create_app(FunctionSettings(ingestor_address=fuzzed_ingestor.address, api_token=token))
    schema = load_schema(fuzzed_app, token)
    seen: set[tuple[str, str, int]] = set()

    def check(case: schemathesis.Case) -> None:
        response = case.call()
        try:
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        except FailureGroup as group:
            if any(not is_negative_data_that_serialized_valid(response, failure) for failure in group.exceptions):
                raise
        if mode is schemathesis.GenerationMode.POSITIVE:
            # Exports and the rows of /processed-data may come in other formats than JSON.
            body = response.json() if response.status_code >= 400 else None
            assert_accepted_or_semantically_refused(case, response.status_code, body)
        assert response.status_code < 500, response.text
        assert response.status_code != 404, f"{case.method} {case.path} is documented but not found"
        assert b"Traceback" not in response.content  # bytes: Parquet and Arrow are not text
        if response.status_code == 422:
            assert_fastapi_validation_error(response.json())
        seen.add((case.method, case.path, response.status_code))

    # Each operation gets its own budget, so that those with many inputs do not starve the others.
    fuzzed = [
        operation
        for operation in operations(schema)
        if mode is schemathesis.GenerationMode.POSITIVE or has_inputs(operation)
    ]
    for operation in fuzzed:
        settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )(given(case=operation.as_strategy(mode))(check))()

    # The run really covered the API: every operation was called (in negative mode, every one with
    # something to make invalid), and with the token, no valid request was refused for the want of it.
    documented = {
        (method.upper(), path)
        for path, item in schema.raw_schema["paths"].items()
        for method in item
        if path not in ("/api/v1/stream", "/api/v1/stream/aggregates")
    }
    called = {(method, path) for method, path, _ in seen}
    assert called == {(operation.method.upper(), operation.path) for operation in fuzzed}
    if mode is schemathesis.GenerationMode.POSITIVE:
        assert called == documented
        assert not [(method, path) for method, path, status in seen if status == 401]
    else:
        assert {("GET", "/api/v1/raw-data"), ("POST", "/api/v1/readings")} <= called
        assert (("POST", "/api/v1/stop-ingestion") in called) is (token is not None)  # its one input: the token
