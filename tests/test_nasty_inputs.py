"""A table of hostile and malformed inputs for every endpoint and every RPC.

Each row gets a precise 4xx (HTTP) or INVALID_ARGUMENT / RESOURCE_EXHAUSTED (gRPC), never a 5xx,
UNKNOWN, INTERNAL or a traceback, and the ingestor's state is the same afterwards. Endpoints and
RPCs added later get rows here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import httpx
import numpy as np
import pytest

from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.harness import ServerProcess, ThreadedIngestor, start_api_process

T0 = 1_705_744_800
MAX_BODY_BYTES = 4096
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
    "limit-empty": _limit(""),
    "limit-nul": _limit("\x00"),
    "limit-control-chars": _limit("\x1b[31m5"),
    "limit-fullwidth-digits": _limit("\uff11\uff10"),
    "limit-hex": _limit("0x10"),
    "limit-sql": _limit("1; DROP TABLE readings"),
    "limit-repeated-bad": Http("GET", "/api/v1/raw-data", 422, "limit", params=[("limit", "1"), ("limit", "x")]),
    "start-oversized-body": Http("POST", "/api/v1/start-ingestion", 413, "at most 4096 bytes", content=b"{" * 5000),
    "stop-oversized-body": Http("POST", "/api/v1/stop-ingestion", 413, "at most 4096 bytes", content=b"x" * 5000),
    "start-by-get": Http("GET", "/api/v1/start-ingestion", 405, "Method Not Allowed"),
    "status-by-post": Http("POST", "/api/v1/status", 405, "Method Not Allowed"),
    "unknown-path": Http("GET", "/api/v1/raw-data%00", 404, "Not Found"),
    "unicode-path": Http("GET", "/api/v1/r\u00e4w-data", 404, "Not Found"),
    "traversal-path": Http("GET", "/api/v1/%2e%2e/%2e%2e/etc/passwd", 404, "Not Found"),
}


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[ThreadedIngestor, ServerProcess]]:
    ingestor = ThreadedIngestor(capacity=1000, max_message_bytes=MAX_MESSAGE_BYTES)
    # Something to keep: the state must still be exactly this after every nasty request.
    ingestor.call(ingestor.running.ingestion.stop())
    with grpc.insecure_channel(ingestor.address) as channel:
        readings = [pb.Reading(timestamp={"seconds": T0 + i}, value=float(i), category="A") for i in range(10)]
        pb_grpc.IngestorServiceStub(channel).WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=5)
    api = start_api_process(ingestor.address, MAX_BODY_BYTES=str(MAX_BODY_BYTES))
    yield ingestor, api
    api.stop()
    ingestor.close()


def snapshot(ingestor: ThreadedIngestor) -> tuple[object, ...]:
    store = ingestor.running.store
    return (
        ingestor.running.ingestion.running,
        store.total_ingested,
        store.buffered,
        tuple(store.categories),
        store.read(0, store.total_ingested).values.tolist(),
    )


def assert_no_internals(text: str) -> None:
    for leak in ("Traceback", 'File "', "grpc", "127.0.0.1", "Exception"):
        assert leak not in text, text


@pytest.mark.parametrize("case", HTTP_CASES.values(), ids=HTTP_CASES.keys())
def test_nasty_http_input_gets_a_precise_4xx_and_changes_nothing(
    stack: tuple[ThreadedIngestor, ServerProcess], case: Http
) -> None:
    ingestor, api = stack
    before = snapshot(ingestor)
    with httpx.Client(base_url=f"http://{api.address}", timeout=10) as http:
        response = http.request(case.method, case.path, params=case.params, content=case.content, headers=case.headers)
    assert response.status_code == case.status, response.text
    assert_no_internals(response.text)
    detail = response.json()["detail"]
    if case.status == 422:
        assert [error["loc"] for error in detail] == [["query", case.detail]]
        assert all(error["msg"] for error in detail)
    else:
        assert case.detail in detail
    assert response.headers["x-request-id"]
    assert snapshot(ingestor) == before


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
    "write-oversized": Rpc(
        "WriteReadings",
        _write(*[_reading(value=float(i)) for i in range(5000)]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        str(MAX_MESSAGE_BYTES),
    ),
}


def _invoke(channel: grpc.Channel, case: Rpc) -> None:
    path = f"/ingestor.v1.IngestorService/{case.method}"
    streaming = case.method == "ExportReadings"
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
def test_nasty_rpc_input_gets_a_precise_status_and_changes_nothing(
    stack: tuple[ThreadedIngestor, ServerProcess], case: Rpc
) -> None:
    ingestor, _ = stack
    before = snapshot(ingestor)
    with grpc.insecure_channel(ingestor.address) as channel, pytest.raises(grpc.RpcError) as caught:
        _invoke(channel, case)
    error = caught.value
    assert error.code() is case.code, error.details()
    assert case.detail in (error.details() or "")
    assert_no_internals(error.details().replace("grpc.max_receive_message_length", ""))
    assert snapshot(ingestor) == before


def test_huge_but_valid_numbers_are_accepted_and_capped(stack: tuple[ThreadedIngestor, ServerProcess]) -> None:
    ingestor, _ = stack
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        assert len(stub.ListReadings(pb.ListReadingsRequest(page_size=2**31 - 1), timeout=5).readings) == 10
        exported = list(stub.ExportReadings(pb.ExportReadingsRequest(max_readings=2**64 - 1), timeout=5))
        assert sum(len(m.columns.values) // 8 for m in exported) == 10
