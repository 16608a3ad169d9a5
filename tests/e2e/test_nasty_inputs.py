"""A table of hostile and malformed inputs for every endpoint and every RPC.

Each row gets a precise 4xx (HTTP) or INVALID_ARGUMENT / RESOURCE_EXHAUSTED (gRPC), never a 5xx,
UNKNOWN, INTERNAL or a traceback, and the ingestor's state is the same afterwards. Endpoints and
RPCs added later get rows here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import grpc
import numpy as np
import pytest

from devtools.processes import ServerProcess, ThreadedIngestor
from ingestor.pages import encode_page_token
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import http_client
from tests.support.factories import MakeIngestor, MakeProcess

T0 = 1_705_744_800
# Large enough for more than 10,000 tiny readings, so that the count limit is reached before this.
MAX_BODY_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Http:
    method: str
    path: str
    status: int
    detail: str
    """A fragment of the error's detail; for 422, the name of the parameter (its ``loc``)."""
    params: dict[str, str] | list[tuple[str, str]] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    loc: tuple[str | int, ...] | None = None
    """For a 422 whose error is not simply about the query parameter ``detail``: the error's
    ``loc``, and then ``detail`` is its ``type``."""


def _limit(value: str, detail: str = "limit") -> Http:
    return Http("GET", "/api/v1/raw-data", 422, detail, params={"limit": value})


HTTP_CASES: dict[str, Http] = {
    "limit-word": _limit("abc"),
    "limit-float": _limit("1.5"),
    "limit-nan": _limit("NaN"),
    "limit-infinity": _limit("Infinity"),
    "limit-minus-infinity": _limit("-Infinity"),
    "limit-overflowing-float": _limit("1e309"),
    "limit-huge": _limit("9" * 40),
    "limit-negative": _limit("-1"),
    "limit-zero": _limit("0"),
    "limit-over-max": _limit("10001"),
    "limit-4301-digits": _limit("9" * 4301),
    "limit-empty": _limit(""),
    "limit-nul": _limit("\x00"),
    "limit-control-chars": _limit("\x1b[31m5"),
    "limit-fullwidth-digits": _limit("\uff11\uff10"),
    "limit-hex": _limit("0x10"),
    "limit-sql": _limit("1; DROP TABLE readings"),
    "limit-repeated-bad": Http("GET", "/api/v1/raw-data", 422, "limit", params=[("limit", "1"), ("limit", "x")]),
    "start-oversized-body": Http(
        "POST", "/api/v1/start-ingestion", 413, f"at most {MAX_BODY_BYTES} bytes", content=b"{" * (MAX_BODY_BYTES + 1)
    ),
    "stop-oversized-body": Http(
        "POST", "/api/v1/stop-ingestion", 413, f"at most {MAX_BODY_BYTES} bytes", content=b"x" * (MAX_BODY_BYTES + 1)
    ),
    "start-by-get": Http("GET", "/api/v1/start-ingestion", 405, "Method Not Allowed"),
    "status-by-post": Http("POST", "/api/v1/status", 405, "Method Not Allowed"),
    "unknown-path": Http("GET", "/api/v1/raw-data%00", 404, "Not Found"),
    "unicode-path": Http("GET", "/api/v1/r\u00e4w-data", 404, "Not Found"),
    "traversal-path": Http("GET", "/api/v1/%2e%2e/%2e%2e/etc/passwd", 404, "Not Found"),
}


# --- POST /api/v1/readings, POST /api/v1/start-ingestion with a body, query filters ----------

_JSON = {"content-type": "application/json"}


def _json(document: object) -> bytes:
    """JSON as Python writes it: NaN and Infinity become the (non-standard) bare tokens."""
    return json.dumps(document, ensure_ascii=False).encode()


def _item(**changes: object) -> dict[str, object]:
    item: dict[str, object] = {"timestamp": "2024-01-20T10:00:00Z", "value": 1.5, "category": "A"}
    item.update(changes)
    return {name: value for name, value in item.items() if value is not _LEFT_OUT}


_LEFT_OUT = object()


def _readings(content: bytes, status: int, detail: str, loc: tuple[str | int, ...] | None = None) -> Http:
    return Http("POST", "/api/v1/readings", status, detail, content=content, headers=_JSON, loc=loc)


def _bad_item(field_name: str, kind: str, **changes: object) -> Http:
    """A body of one good reading and one bad one: the error names the second (index 1)."""
    return _readings(_json([_item(), _item(**changes)]), 422, kind, ("body", 1, field_name))


def _start(content: bytes, detail: str, loc: tuple[str | int, ...] | None) -> Http:
    return Http("POST", "/api/v1/start-ingestion", 422, detail, content=content, headers=_JSON, loc=loc)


def _start_field(field_name: str, kind: str, value: object, *more: str | int) -> Http:
    return _start(_json({field_name: value}), kind, ("body", field_name, *more))


def _query(path: str, params: dict[str, str] | list[tuple[str, str]], kind: str, *loc: str | int) -> Http:
    return Http("GET", path, 422, kind, params=params, loc=("query", *loc))


_TRUNCATED = b'[{"timestamp": "2024-01-20T10:00:00Z", "val'
_TOO_MANY = b"[" + b"0," * 10_000 + b"0]"

for _path in ("/api/v1/raw-data", "/api/v1/processed-data"):
    _name = _path.rsplit("/", 1)[1]
    HTTP_CASES |= {
        f"{_name}-since-word": _query(_path, {"since": "yesterday"}, "datetime_from_date_parsing", "since"),
        f"{_name}-since-month-13": _query(
            _path, {"since": "2024-13-01T00:00:00Z"}, "datetime_from_date_parsing", "since"
        ),
        f"{_name}-until-hour-25": _query(
            _path, {"until": "2024-01-20T25:00:00"}, "datetime_from_date_parsing", "until"
        ),
        f"{_name}-until-empty": _query(_path, {"until": ""}, "datetime_from_date_parsing", "until"),
        f"{_name}-since-control-chars": _query(
            _path, {"since": "2024-01-20\x00"}, "datetime_from_date_parsing", "since"
        ),
        f"{_name}-since-a-bare-number": _query(_path, {"since": "0.0"}, "value_error", "since"),
        f"{_name}-until-epoch-seconds": _query(_path, {"until": "1700000000"}, "value_error", "until"),
        f"{_name}-since-after-until": _query(
            _path, {"since": "2024-01-20T10:00:01Z", "until": "2024-01-20T10:00:00Z"}, "value_error", "since"
        ),
        f"{_name}-category-unicode": _query(_path, {"category": "\u00c4"}, "string_pattern_mismatch", "category", 0),
        f"{_name}-category-empty": _query(_path, {"category": ""}, "string_pattern_mismatch", "category", 0),
        f"{_name}-category-newline": _query(
            _path, [("category", "A"), ("category", "A\nB")], "string_pattern_mismatch", "category", 1
        ),
        f"{_name}-category-too-long": _query(_path, {"category": "x" * 65}, "string_pattern_mismatch", "category", 0),
    }

HTTP_CASES |= {
    "raw-data-page-token-garbage": Http(
        "GET", "/api/v1/raw-data", 400, "page_token is invalid", params={"page_token": "not-a-token"}
    ),
    "raw-data-page-token-huge": _query("/api/v1/raw-data", {"page_token": "A" * 201}, "string_too_long", "page_token"),
    "raw-data-after-sequence-word": _query(
        "/api/v1/raw-data", {"after_sequence": "x"}, "int_parsing", "after_sequence"
    ),
    "raw-data-after-sequence-nan": _query(
        "/api/v1/raw-data", {"after_sequence": "NaN"}, "int_parsing", "after_sequence"
    ),
    "raw-data-after-sequence-below": _query(
        "/api/v1/raw-data", {"after_sequence": "-2"}, "greater_than_equal", "after_sequence"
    ),
    "raw-data-after-sequence-huge": _query(
        "/api/v1/raw-data", {"after_sequence": "9" * 40}, "less_than_equal", "after_sequence"
    ),
    "raw-data-after-sequence-with-token": _query(
        "/api/v1/raw-data", {"after_sequence": "1", "page_token": "x"}, "value_error", "after_sequence"
    ),
    "stream-last-event-id-word": Http(
        "GET",
        "/api/v1/stream",
        422,
        "string_pattern_mismatch",
        headers={"Last-Event-ID": "abc"},
        loc=("header", "Last-Event-ID"),
    ),
    "stream-last-event-id-huge": Http(
        "GET",
        "/api/v1/stream",
        422,
        "string_pattern_mismatch",
        headers={"Last-Event-ID": "9" * 19},
        loc=("header", "Last-Event-ID"),
    ),
    "processed-window-zero": _query("/api/v1/processed-data", {"window": "0s"}, "string_pattern_mismatch", "window"),
    "processed-window-2d": _query("/api/v1/processed-data", {"window": "2d"}, "value_error", "window"),
    "processed-window-86401s": _query("/api/v1/processed-data", {"window": "86401s"}, "value_error", "window"),
    "processed-window-1x": _query("/api/v1/processed-data", {"window": "1x"}, "string_pattern_mismatch", "window"),
    "processed-window-negative": _query(
        "/api/v1/processed-data", {"window": "-1s"}, "string_pattern_mismatch", "window"
    ),
    "processed-window-fraction": _query(
        "/api/v1/processed-data", {"window": "1.5s"}, "string_pattern_mismatch", "window"
    ),
    "processed-window-huge": _query("/api/v1/processed-data", {"window": "9" * 40 + "s"}, "value_error", "window"),
    "processed-window-100-digits": _query(
        "/api/v1/processed-data", {"window": "9" * 100 + "m"}, "value_error", "window"
    ),
    "processed-window-101-digits": _query(
        "/api/v1/processed-data", {"window": "9" * 101 + "m"}, "string_pattern_mismatch", "window"
    ),
    # More digits than Python converts to an int.
    "processed-window-4301-digits": _query(
        "/api/v1/processed-data", {"window": "9" * 4301 + "s"}, "string_pattern_mismatch", "window"
    ),
    "processed-stats-unknown": _query("/api/v1/processed-data", {"stats": "median"}, "value_error", "stats"),
    "processed-stats-one-unknown": _query("/api/v1/processed-data", {"stats": "min,p42"}, "value_error", "stats"),
    **{
        f"processed-{name}": _query("/api/v1/processed-data", params, kind, loc)
        for name, params, kind, loc in (
            ("step-zero", {"window": "10s", "step": "0s"}, "string_pattern_mismatch", "step"),
            ("step-not-dividing", {"window": "10s", "step": "3s"}, "value_error", "step"),
            ("step-over-window", {"window": "10s", "step": "20s"}, "value_error", "step"),
            ("step-without-window", {"step": "10s"}, "value_error", "step"),
            ("step-4301-digits", {"window": "1d", "step": "9" * 4301 + "s"}, "string_pattern_mismatch", "step"),
            ("step-2d", {"window": "1d", "step": "2d"}, "value_error", "step"),
            ("session-gap-with-window", {"window": "10s", "session_gap": "10s"}, "value_error", "session_gap"),
            ("session-gap-2d", {"session_gap": "2d"}, "value_error", "session_gap"),
            ("session-gap-unicode", {"session_gap": "\uff11s"}, "string_pattern_mismatch", "session_gap"),
            ("grace-negative", {"window": "10s", "grace": "-1s"}, "string_pattern_mismatch", "grace"),
            ("grace-2d", {"window": "10s", "grace": "2d"}, "value_error", "grace"),
            ("grace-without-window", {"grace": "1s"}, "value_error", "grace"),
            ("grace-nan", {"window": "10s", "grace": "NaN"}, "string_pattern_mismatch", "grace"),
            ("emit-unknown", {"window": "10s", "emit": "sometimes"}, "literal_error", "emit"),
            ("emit-without-window", {"emit": "final"}, "value_error", "emit"),
            ("fill-unknown", {"window": "10s", "fill": "mean"}, "literal_error", "fill"),
            ("fill-with-sessions", {"session_gap": "10s", "fill": "zero"}, "value_error", "fill"),
            ("format-unknown", {"format": "xlsx"}, "literal_error", "format"),
            ("format-control-chars", {"format": "csv\x00"}, "literal_error", "format"),
            ("stats-late-and-unknown", {"stats": "late,lateness"}, "value_error", "stats"),
        )
    },
    "export-format-unknown": _query("/api/v1/export", {"format": "json"}, "literal_error", "format"),
    "export-category-unicode": _query(
        "/api/v1/export", {"category": "\u00c4"}, "string_pattern_mismatch", "category", 0
    ),
    "export-since-after-until": _query(
        "/api/v1/export", {"since": "2024-01-20T10:00:01Z", "until": "2024-01-20T10:00:00Z"}, "value_error", "since"
    ),
    "export-until-word": _query("/api/v1/export", {"until": "soon"}, "datetime_from_date_parsing", "until"),
    "feed-without-window": _query("/api/v1/stream/aggregates", {}, "missing", "window"),
    "feed-window-2d": _query("/api/v1/stream/aggregates", {"window": "2d"}, "value_error", "window"),
    "feed-step-not-dividing": _query(
        "/api/v1/stream/aggregates", {"window": "10s", "step": "4s"}, "value_error", "step"
    ),
    "feed-emit-unknown": _query("/api/v1/stream/aggregates", {"window": "1s", "emit": "all"}, "literal_error", "emit"),
    "feed-fill-is-not-a-feed-parameter-but-grace-is": _query(
        "/api/v1/stream/aggregates", {"window": "1s", "grace": "1x"}, "string_pattern_mismatch", "grace"
    ),
    "feed-last-event-id-word": Http(
        "GET",
        "/api/v1/stream/aggregates",
        422,
        "string_pattern_mismatch",
        params={"window": "1s"},
        headers={"Last-Event-ID": "yesterday"},
        loc=("header", "Last-Event-ID"),
    ),
    "feed-last-event-id-huge": Http(
        "GET",
        "/api/v1/stream/aggregates",
        422,
        "string_pattern_mismatch",
        params={"window": "1s"},
        headers={"Last-Event-ID": "9" * 40},
        loc=("header", "Last-Event-ID"),
    ),
    "readings-truncated-json": _readings(_TRUNCATED, 422, "json_invalid", ("body", len(_TRUNCATED))),
    "readings-not-utf8": _readings(b"[\xff\xfe]", 422, "json_invalid", ("body", 0)),
    "readings-nan-token": _readings(_json([_item(value=float("nan"))]), 422, "json_invalid", ("body", 48)),
    "readings-infinity-token": _readings(_json([_item(value=float("inf"))]), 422, "json_invalid", ("body", 48)),
    "readings-huge-number": _readings(
        b'[{"timestamp": "2024-01-20T10:00:00Z", "value": 1e400, "category": "A"}]', 422, "json_invalid", ("body", 48)
    ),
    "readings-value-word": _bad_item("value", "float_type", value="abc"),
    "readings-value-numeric-string": _bad_item("value", "float_type", value="1.5"),
    "readings-value-nan-string": _bad_item("value", "float_type", value="NaN"),
    "readings-value-infinity-string": _bad_item("value", "float_type", value="Infinity"),
    "readings-value-null": _bad_item("value", "float_type", value=None),
    "readings-value-bool": _bad_item("value", "float_type", value=True),
    "readings-value-list": _bad_item("value", "float_type", value=[1.0]),
    "readings-huge-integer": _readings(_json([_item(), _item(value=10**400)]), 422, "json_invalid", ("body", 118)),
    "readings-category-unicode": _bad_item("category", "string_pattern_mismatch", category="\u00c4"),
    "readings-category-emoji": _bad_item("category", "string_pattern_mismatch", category="\U0001f600"),
    "readings-category-nul": _bad_item("category", "string_pattern_mismatch", category="A\x00"),
    "readings-category-escape": _bad_item("category", "string_pattern_mismatch", category="\x1b[31mA"),
    "readings-category-rtl-override": _bad_item("category", "string_pattern_mismatch", category="A\u202eB"),
    "readings-category-empty": _bad_item("category", "string_pattern_mismatch", category=""),
    "readings-category-too-long": _bad_item("category", "string_pattern_mismatch", category="x" * 65),
    "readings-category-number": _bad_item("category", "string_type", category=7),
    "readings-timestamp-word": _bad_item("timestamp", "timestamp_parsing", timestamp="yesterday"),
    "readings-timestamp-month-13": _bad_item("timestamp", "timestamp_parsing", timestamp="2024-13-01T00:00:00Z"),
    "readings-timestamp-hour-25": _bad_item("timestamp", "timestamp_parsing", timestamp="2024-01-20T25:00:00"),
    "readings-timestamp-empty": _bad_item("timestamp", "timestamp_parsing", timestamp=""),
    "readings-timestamp-number": _bad_item("timestamp", "string_type", timestamp=1_705_744_800),
    "readings-timestamp-year-9999": _bad_item("timestamp", "timestamp_range", timestamp="9999-01-01T00:00:00Z"),
    "readings-timestamp-year-1000": _bad_item("timestamp", "timestamp_range", timestamp="1000-01-01T00:00:00Z"),
    "readings-timestamp-missing": _bad_item("timestamp", "missing", timestamp=_LEFT_OUT),
    "readings-extra-field": _bad_item("unit", "extra_forbidden", unit="C"),
    "readings-item-not-object": _readings(_json([_item(), "A"]), 422, "model_type", ("body", 1)),
    "readings-object-body": _readings(_json(_item()), 422, "list_type", ("body",)),
    "readings-string-body": _readings(b'"readings"', 422, "list_type", ("body",)),
    "readings-null-body": _readings(b"null", 422, "list_type", ("body",)),
    "readings-number-body": _readings(b"42", 422, "list_type", ("body",)),
    "readings-empty-body": _readings(b"", 422, "json_invalid", ("body", 0)),
    "readings-too-many": _readings(_TOO_MANY, 413, "at most 10000 readings a request, got 10001"),
    "readings-oversized-body": _readings(b"[" + b" " * MAX_BODY_BYTES + b"]", 413, f"at most {MAX_BODY_BYTES} bytes"),
    "start-rate-zero": _start_field("rate_hz", "greater_than", 0),
    "start-rate-negative": _start_field("rate_hz", "greater_than", -5),
    "start-rate-over-max": _start_field("rate_hz", "less_than_equal", 1_000_001),
    "start-rate-huge": _start_field("rate_hz", "less_than_equal", 1e300),
    "start-rate-nan-token": _start(b'{"rate_hz": NaN}', "finite_number", ("body", "rate_hz")),
    "start-rate-infinity-token": _start(b'{"rate_hz": Infinity}', "finite_number", ("body", "rate_hz")),
    "start-rate-minus-infinity-token": _start(b'{"rate_hz": -Infinity}', "finite_number", ("body", "rate_hz")),
    "start-rate-nan-string": _start_field("rate_hz", "finite_number", "NaN"),
    "start-rate-infinity-string": _start_field("rate_hz", "finite_number", "Infinity"),
    "start-rate-word": _start_field("rate_hz", "float_parsing", "fast"),
    "start-categories-empty": _start_field("categories", "too_short", []),
    "start-categories-not-list": _start_field("categories", "list_type", "A"),
    "start-categories-unicode": _start_field("categories", "string_pattern_mismatch", ["A", "\u00c4"], 1),
    "start-categories-control": _start_field("categories", "string_pattern_mismatch", ["A\x07"], 0),
    "start-categories-number": _start_field("categories", "string_type", [1], 0),
    "start-categories-repeated": _start_field("categories", "value_error", ["A", "A"]),
    "start-categories-too-many": _start_field("categories", "too_long", [f"c{i}" for i in range(65)]),
    "start-seed-fraction": _start_field("seed", "int_type", 1.5),
    "start-seed-string": _start_field("seed", "int_type", "42"),
    "start-seed-bool": _start_field("seed", "int_type", True),
    "start-seed-huge": _start_field("seed", "less_than_equal", 2**64),
    "start-unknown-field": _start_field("speed", "extra_forbidden", 10),
    "start-truncated-json": _start(b'{"rate_hz": 1', "json_invalid", ("body", 13)),
    "start-array-body": _start(b"[1, 2]", "model_attributes_type", ("body",)),
}


@pytest.fixture(scope="module")
def nasty_ingestor(make_module_ingestor: MakeIngestor) -> ThreadedIngestor:
    """One ingestor for the whole module: every case must leave it as it was."""
    ingestor = make_module_ingestor(capacity=1000, max_message_bytes=MAX_MESSAGE_BYTES)
    # Something to keep: the state must still be exactly this after every nasty request.
    ingestor.stop_generator()
    with grpc.insecure_channel(ingestor.address) as channel:
        readings = [pb.Reading(timestamp={"seconds": T0 + i}, value=float(i), category="A") for i in range(10)]
        pb_grpc.IngestorServiceStub(channel).WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=5)
    return ingestor


@pytest.fixture(scope="module")
def stack(
    nasty_ingestor: ThreadedIngestor, make_module_api_process: MakeProcess
) -> tuple[ThreadedIngestor, ServerProcess]:
    """That ingestor and one API process in front of it, for the whole module."""
    return nasty_ingestor, make_module_api_process(nasty_ingestor.address, MAX_BODY_BYTES=str(MAX_BODY_BYTES))


def snapshot(ingestor: ThreadedIngestor) -> tuple[object, ...]:
    store = ingestor.running.store
    return (
        ingestor.running.generator.running,
        store.total_ingested,
        store.buffered,
        tuple(store.categories),
        store.read(0, store.total_ingested).values.tolist(),
    )


def assert_no_internals(text: str) -> None:
    for leak in ("Traceback", 'File "', "grpc", "127.0.0.1", "Exception"):
        assert leak not in text, text


@pytest.mark.slow  # through the API process
@pytest.mark.parametrize("case", HTTP_CASES.values(), ids=HTTP_CASES.keys())
def test_nasty_http_input_gets_a_precise_4xx_and_changes_nothing(
    stack: tuple[ThreadedIngestor, ServerProcess], case: Http
) -> None:
    ingestor, api = stack
    before = snapshot(ingestor)
    with http_client(f"http://{api.address}", timeout=10) as http:
        response = http.request(case.method, case.path, params=case.params, content=case.content, headers=case.headers)
    assert response.status_code == case.status, response.text
    assert_no_internals(response.text)
    detail = response.json()["detail"]
    if case.status == 422 and case.loc is not None:
        assert [(error["loc"], error["type"]) for error in detail] == [(list(case.loc), case.detail)]
        assert all(error["msg"] for error in detail)
    elif case.status == 422:
        assert [error["loc"] for error in detail] == [["query", case.detail]]
        assert all(error["msg"] for error in detail)
    else:
        assert case.detail in detail
    assert response.headers["x-request-id"]
    assert snapshot(ingestor) == before


@pytest.mark.slow  # through the API process
def test_an_empty_array_of_readings_is_accepted_and_stores_nothing(
    stack: tuple[ThreadedIngestor, ServerProcess],
) -> None:
    ingestor, api = stack
    before = snapshot(ingestor)
    with http_client(f"http://{api.address}", timeout=10) as http:
        response = http.post("/api/v1/readings", content=b"[]", headers=_JSON)
    assert (response.status_code, response.json()) == (202, {"accepted": 0})
    assert snapshot(ingestor) == before


@pytest.mark.slow  # through the API process
def test_a_nan_token_is_echoed_back_as_a_string(stack: tuple[ThreadedIngestor, ServerProcess]) -> None:
    _, api = stack
    with http_client(f"http://{api.address}", timeout=10) as http:
        response = http.post("/api/v1/start-ingestion", content=b'{"rate_hz": -Infinity}', headers=_JSON)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"], error["input"]) == (["body", "rate_hz"], "finite_number", "-Infinity")


@pytest.mark.slow  # through the API process
@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        (lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "altered or not issued by this service"),
        (lambda token: token[:10], "altered or not issued by this service"),
        (lambda token: token + "A", "altered or not issued by this service"),
    ],
    ids=["changed-signature", "cut-short", "lengthened"],
)
def test_a_tampered_page_token_is_a_400(
    stack: tuple[ThreadedIngestor, ServerProcess], tamper: Callable[[str], str], detail: str
) -> None:
    ingestor, api = stack
    with http_client(f"http://{api.address}", timeout=10) as http:
        first = http.get("/api/v1/raw-data", params={"limit": 3})
        token = parse_qs(urlsplit(first.links["next"]["url"]).query)["page_token"][0]
        before = snapshot(ingestor)
        response = http.get("/api/v1/raw-data", params={"limit": 3, "page_token": tamper(token)})
    assert response.status_code == 400, response.text
    assert detail in response.json()["detail"]
    assert_no_internals(response.text)
    assert snapshot(ingestor) == before


@pytest.mark.slow  # through the API process
@pytest.mark.parametrize(
    "other_filters",
    [{"category": "B"}, {"since": "2024-01-20T10:00:00Z"}, {"until": "2030-01-01T00:00:00Z"}],
    ids=["category", "since", "until"],
)
def test_a_page_token_reused_with_other_filters_is_a_400(
    stack: tuple[ThreadedIngestor, ServerProcess], other_filters: dict[str, str]
) -> None:
    ingestor, api = stack
    with http_client(f"http://{api.address}", timeout=10) as http:
        first = http.get("/api/v1/raw-data", params={"limit": 3, "category": "A"})
        token = parse_qs(urlsplit(first.links["next"]["url"]).query)["page_token"][0]
        before = snapshot(ingestor)
        response = http.get("/api/v1/raw-data", params={"limit": 3, "page_token": token, **other_filters})
        same = http.get("/api/v1/raw-data", params={"limit": 3, "category": "A", "page_token": token})
    assert response.status_code == 400, response.text
    assert "page_token was issued for other filters" in response.json()["detail"]
    assert snapshot(ingestor) == before
    # The token itself is good: with the filters that made it, it gives the next page.
    assert [reading["value"] for reading in same.json()] == [4.0, 5.0, 6.0]


# --- gRPC -------------------------------------------------------------------------------------


def _reading(seconds: int = T0, value: float = 1.0, category: str = "A", nanos: int = 0) -> pb.Reading:
    return pb.Reading(timestamp={"seconds": seconds, "nanos": nanos}, value=value, category=category)


def _write(*readings: pb.Reading) -> pb.WriteReadingsRequest:
    return pb.WriteReadingsRequest(readings=list(readings))


def _columns(timestamps: bytes, values: bytes, codes: bytes, categories: list[str]) -> pb.WriteReadingsRequest:
    columns = pb.ReadingColumns(timestamps_ns=timestamps, values=values, category_codes=codes)
    return pb.WriteReadingsRequest(columns=columns, column_categories=categories)


def _with_batch_id(batch_id: str) -> pb.WriteReadingsRequest:
    request = _write(_reading())
    request.batch_id = batch_id
    return request


@dataclass(frozen=True)
class Rpc:
    method: str
    request: object
    """A request message, or raw bytes sent as they are."""
    code: grpc.StatusCode
    detail: str


def _unfiltered_token() -> str:
    """A well-formed ListReadings token issued for no filter (so not valid with a category)."""
    return encode_page_token(5)


_ONE_TS = np.array([T0 * 10**9], "<i8").tobytes()
_ONE_VALUE = np.array([1.0], "<f8").tobytes()
_CODE0 = np.array([0], "<u2").tobytes()
_BAD = grpc.StatusCode.INVALID_ARGUMENT

RPC_CASES: dict[str, Rpc] = {
    "list-negative-page-size": Rpc("ListReadings", pb.ListReadingsRequest(page_size=-1), _BAD, "page_size"),
    "list-min-int-page-size": Rpc("ListReadings", pb.ListReadingsRequest(page_size=-(2**31)), _BAD, "page_size"),
    "list-garbage-token": Rpc("ListReadings", pb.ListReadingsRequest(page_token="%%%"), _BAD, "page_token"),
    "list-unicode-token": Rpc("ListReadings", pb.ListReadingsRequest(page_token="ä€😀"), _BAD, "page_token"),
    "list-control-token": Rpc("ListReadings", pb.ListReadingsRequest(page_token="\x00\x01\n"), _BAD, "page_token"),
    "list-huge-token": Rpc("ListReadings", pb.ListReadingsRequest(page_token="A" * 10_000), _BAD, "page_token"),
    "list-future-token": Rpc("ListReadings", pb.ListReadingsRequest(page_token="__________8"), _BAD, "page_token"),
    "export-huge-chunk": Rpc("ExportReadings", pb.ExportReadingsRequest(chunk_size=2**32 - 1), _BAD, "chunk_size"),
    "write-nan": Rpc("WriteReadings", _write(_reading(value=float("nan"))), _BAD, "finite"),
    "write-infinity": Rpc("WriteReadings", _write(_reading(value=float("inf"))), _BAD, "finite"),
    "write-minus-infinity": Rpc("WriteReadings", _write(_reading(), _reading(value=-float("inf"))), _BAD, "[1].value"),
    "write-far-future": Rpc("WriteReadings", _write(_reading(seconds=2**62)), _BAD, "timestamp"),
    "write-far-past": Rpc("WriteReadings", _write(_reading(seconds=-(2**62))), _BAD, "timestamp"),
    "write-negative-nanos": Rpc("WriteReadings", _write(_reading(nanos=-1)), _BAD, "nanos"),
    "write-nanos-overflow": Rpc("WriteReadings", _write(_reading(nanos=10**9)), _BAD, "nanos"),
    "write-no-timestamp": Rpc("WriteReadings", _write(pb.Reading(value=1.0, category="A")), _BAD, "missing"),
    "write-empty-category": Rpc("WriteReadings", _write(_reading(category="")), _BAD, "category"),
    "write-unicode-category": Rpc("WriteReadings", _write(_reading(category="Ä")), _BAD, "category"),
    "write-emoji-category": Rpc("WriteReadings", _write(_reading(category="😀")), _BAD, "category"),
    "write-nul-category": Rpc("WriteReadings", _write(_reading(category="A\x00")), _BAD, "category"),
    "write-newline-category": Rpc("WriteReadings", _write(_reading(category="A\nB")), _BAD, "category"),
    "write-long-category": Rpc("WriteReadings", _write(_reading(category="x" * 10_000)), _BAD, "category"),
    "write-ragged-columns": Rpc("WriteReadings", _columns(_ONE_TS * 2, _ONE_VALUE, _CODE0, ["A"]), _BAD, "same"),
    "write-odd-bytes": Rpc("WriteReadings", _columns(_ONE_TS[:5], _ONE_VALUE, _CODE0, ["A"]), _BAD, "multiple"),
    "write-code-out-of-range": Rpc(
        "WriteReadings", _columns(_ONE_TS, _ONE_VALUE, np.array([7], "<u2").tobytes(), ["A"]), _BAD, "category_codes"
    ),
    "write-nan-column": Rpc(
        "WriteReadings", _columns(_ONE_TS, np.array([np.nan], "<f8").tobytes(), _CODE0, ["A"]), _BAD, "finite"
    ),
    "write-truncated-message": Rpc(
        "WriteReadings", _write(_reading(), _reading()).SerializeToString()[:-3], _BAD, "not a valid message"
    ),
    "write-garbage-bytes": Rpc("WriteReadings", b"\xff\xfe\xfd\xfc", _BAD, "not a valid message"),
    "list-truncated-message": Rpc("ListReadings", b"\x12\x05ab", _BAD, "not a valid message"),
    "export-garbage-bytes": Rpc("ExportReadings", b"\x08", _BAD, "not a valid message"),
    "write-batch-id-space": Rpc("WriteReadings", _with_batch_id("a b"), _BAD, "batch_id"),
    "write-batch-id-control": Rpc("WriteReadings", _with_batch_id("a\x00b"), _BAD, "batch_id"),
    "write-batch-id-unicode": Rpc("WriteReadings", _with_batch_id("b\u00e4tch"), _BAD, "batch_id"),
    "write-batch-id-huge": Rpc("WriteReadings", _with_batch_id("x" * 129), _BAD, "batch_id"),
    "watch-unicode-category": Rpc(
        "WatchReadings", pb.WatchReadingsRequest(categories=["\u00c4"]), _BAD, "categories[0]"
    ),
    "watch-empty-category": Rpc("WatchReadings", pb.WatchReadingsRequest(categories=["A", ""]), _BAD, "categories[1]"),
    "watch-control-category": Rpc(
        "WatchReadings", pb.WatchReadingsRequest(categories=["A\x1b"]), _BAD, "categories[0]"
    ),
    "watch-long-category": Rpc("WatchReadings", pb.WatchReadingsRequest(categories=["x" * 65]), _BAD, "categories[0]"),
    "watch-garbage-bytes": Rpc("WatchReadings", b"\x0a\x05ab", _BAD, "not a valid message"),
    "watch-columnar-space-category": Rpc(
        "WatchReadings", pb.WatchReadingsRequest(categories=["A", "B C"], columnar=True), _BAD, "categories[1]"
    ),
    "watch-columnar-truncated": Rpc("WatchReadings", b"\x10", _BAD, "not a valid message"),
    "watch-late-flags-space-category": Rpc(
        "WatchReadings",
        pb.WatchReadingsRequest(categories=["A B"], columnar=True, late_flags=True),
        _BAD,
        "categories[0]",
    ),
    "export-late-flags-since-after-until": Rpc(
        "ExportReadings",
        pb.ExportReadingsRequest(late_flags=True, since={"seconds": T0 + 1}, until={"seconds": T0}),
        _BAD,
        "since must not be after",
    ),
    **{
        f"{rpc.lower()}-{name}": Rpc(rpc, request, _BAD, detail)
        for rpc, make in (("ListReadings", pb.ListReadingsRequest), ("ExportReadings", pb.ExportReadingsRequest))
        for name, request, detail in (
            ("unicode-category", make(categories=["\u00c4"]), "categories[0]"),
            ("space-category", make(categories=["A", "B C"]), "categories[1]"),
            ("nul-category", make(categories=["A\x00"]), "categories[0]"),
            ("since-after-until", make(since={"seconds": T0 + 1}, until={"seconds": T0}), "since must not be after"),
            ("negative-since-nanos", make(since={"seconds": T0, "nanos": -1}), "since.nanos"),
            ("until-nanos-overflow", make(until={"seconds": T0, "nanos": 10**9}), "until.nanos"),
        )
    },
    "list-token-for-other-filters": Rpc(
        "ListReadings", pb.ListReadingsRequest(categories=["A"], page_token=_unfiltered_token()), _BAD, "other filters"
    ),
    "write-oversized": Rpc(
        "WriteReadings",
        _write(*[_reading(value=float(i)) for i in range(5000)]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        str(MAX_MESSAGE_BYTES),
    ),
}


def _invoke(channel: grpc.Channel, case: Rpc) -> None:
    path = f"/ingestor.v1.IngestorService/{case.method}"
    streaming = case.method in {"ExportReadings", "WatchReadings"}
    if isinstance(case.request, bytes):
        if streaming:
            list(channel.unary_stream(path)(case.request, timeout=5))
        else:
            channel.unary_unary(path)(case.request, timeout=5)
        return
    stub = pb_grpc.IngestorServiceStub(channel)
    result = getattr(stub, case.method)(case.request, timeout=5)
    if streaming:
        list(result)


@pytest.mark.parametrize("case", RPC_CASES.values(), ids=RPC_CASES.keys())
def test_nasty_rpc_input_gets_a_precise_status_and_changes_nothing(nasty_ingestor: ThreadedIngestor, case: Rpc) -> None:
    ingestor = nasty_ingestor
    before = snapshot(ingestor)
    with grpc.insecure_channel(ingestor.address) as channel, pytest.raises(grpc.RpcError) as caught:
        _invoke(channel, case)
    error = caught.value
    assert error.code() is case.code, error.details()
    assert case.detail in (error.details() or "")
    assert_no_internals(error.details().replace("grpc.max_receive_message_length", ""))
    assert snapshot(ingestor) == before


def test_huge_but_valid_numbers_are_accepted_and_capped(nasty_ingestor: ThreadedIngestor) -> None:
    ingestor = nasty_ingestor
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        assert len(stub.ListReadings(pb.ListReadingsRequest(page_size=2**31 - 1), timeout=5).readings) == 10
        exported = list(stub.ExportReadings(pb.ExportReadingsRequest(max_readings=2**64 - 1), timeout=5))
        assert sum(len(m.columns.values) // 8 for m in exported) == 10
