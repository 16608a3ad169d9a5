"""GET /export and /processed-data's format=: CSV, NDJSON, Parquet and Arrow, read back with pandas and
pyarrow; a million readings streamed through real uvicorn within a few chunks of memory; and, behind
the real Lambda handler, a 413 instead of a gateway error past the 6 MB limit."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from devtools.processes import ROOT, ServerProcess, ThreadedIngestor
from devtools.waiting import wait_until
from functions.app import handler
from functions.settings import get_settings
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http
from tests.support.events import LambdaContext, http_v2_event, rest_v1_event
from tests.support.factories import MakeIngestor, MakeProcess

pytestmark = pytest.mark.slow  # real uvicorn (and a real ingestor) per module

T0 = 1_705_744_800_000_000_000
N = 1_000_000
NAMES = ["north", "south", "east", "west.1"]


def push(address: str, timestamps: np.ndarray, values: np.ndarray, codes: np.ndarray, names: list[str]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        for start in range(0, len(timestamps), 65_536):
            part = slice(start, start + 65_536)
            columns = pb.ReadingColumns(
                timestamps_ns=timestamps[part].astype("<i8").tobytes(),
                values=values[part].astype("<f8").tobytes(),
                category_codes=codes[part].astype("<u2").tobytes(),
            )
            stub.WriteReadings(pb.WriteReadingsRequest(columns=columns, column_categories=names), timeout=30)


def million() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(16)
    # Microsecond timestamps (CSV and NDJSON carry microseconds), some out of order, values with
    # every kind of digits, four categories.
    timestamps = T0 + np.arange(N, dtype=np.int64) * 1000 - rng.integers(0, 3, N) * 5_000_000
    values = np.concatenate([np.round(rng.normal(50, 10, N // 2), 2), rng.normal(0, 1e6, N - N // 2)])
    return timestamps, values, rng.integers(0, len(NAMES), N).astype(np.uint16)


@pytest.fixture(scope="module")
def loaded(
    make_module_ingestor: MakeIngestor, make_module_api_process: MakeProcess
) -> tuple[ServerProcess, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    ingestor = make_module_ingestor(capacity=N)
    ingestor.stop_generator()
    data = million()
    push(ingestor.address, *data, NAMES)
    return make_module_api_process(ingestor.address, INGESTOR_TIMEOUT_S="60"), data


def read_back(format_name: str, body: bytes) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(timestamps in ns, values, category names) of an export, read by pandas or pyarrow."""
    if format_name == "csv":
        frame = pd.read_csv(io.BytesIO(body), dtype={"category": str})
        assert list(frame.columns) == ["timestamp", "value", "category"]
        stamps = pd.to_datetime(frame["timestamp"], format="%Y-%m-%dT%H:%M:%S.%fZ").to_numpy("datetime64[ns]")
        return stamps.astype(np.int64), frame["value"].to_numpy(), frame["category"].tolist()
    if format_name == "ndjson":
        rows = [orjson.loads(line) for line in body.splitlines()]
        assert all(list(row) == ["timestamp", "value", "category"] for row in rows[:10])
        stamps = np.array([row["timestamp"].rstrip("Z") for row in rows], dtype="datetime64[ns]")
        return stamps.astype(np.int64), np.array([row["value"] for row in rows], float), [r["category"] for r in rows]
    table = pq.read_table(io.BytesIO(body)) if format_name == "parquet" else pa.ipc.open_stream(body).read_all()
    assert table.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert pa.types.is_dictionary(table.schema.field("category").type)
    assert [field.nullable for field in table.schema] == [False, False, False]  # no reading lacks a field
    return (
        table["timestamp"].cast(pa.int64()).to_numpy(),
        table["value"].to_numpy(),
        table["category"].cast(pa.string()).to_pylist(),
    )


@pytest.mark.parametrize("format_name", ["csv", "ndjson", "parquet", "arrow"])
def test_a_million_readings_round_trip_through_each_format(
    loaded: tuple[ServerProcess, tuple[np.ndarray, np.ndarray, np.ndarray]], format_name: str
) -> None:
    api, (timestamps, values, codes) = loaded
    with api_http(api, timeout=120) as http:
        response = http.get("/export", params={"format": format_name})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        {
            "csv": "text/csv",
            "ndjson": "application/x-ndjson",
            "parquet": "application/vnd.apache.parquet",
            "arrow": "application/vnd.apache.arrow.stream",
        }[format_name]
    )
    extension = {"arrow": "arrows"}.get(format_name, format_name)
    assert response.headers["content-disposition"].startswith('attachment; filename="readings-')
    assert response.headers["content-disposition"].endswith(f'.{extension}"')
    got_times, got_values, got_names = read_back(format_name, response.content)
    assert len(got_times) == N
    assert np.array_equal(got_times, timestamps)  # arrival order, late ones where they arrived
    assert np.array_equal(got_values, values)
    assert got_names == [NAMES[c] for c in codes.tolist()]


def test_accept_chooses_the_format_and_the_filters_apply(
    loaded: tuple[ServerProcess, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    api, (timestamps, values, codes) = loaded
    since, until = T0 + 100_000_000, T0 + 101_000_000
    params = {"category": "south", "since": "2024-01-20T10:00:00.1Z", "until": "2024-01-20T10:00:00.101Z"}
    keep = (codes == 1) & (timestamps >= since) & (timestamps < until)
    with api_http(api, timeout=60) as http:
        for accept, format_name in (
            ("application/vnd.apache.parquet", "parquet"),
            ("text/html;q=0.9, application/vnd.apache.arrow.stream", "arrow"),
            ("application/x-ndjson", "ndjson"),
            ("*/*", "csv"),
        ):
            response = http.get("/export", params=params, headers={"Accept": accept})
            assert response.status_code == 200, response.text
            got_times, got_values, got_names = read_back(format_name, response.content)
            assert np.array_equal(got_times, timestamps[keep])
            assert np.array_equal(got_values, values[keep])
            assert set(got_names) == {"south"}
        empty = http.get("/export", params={"category": "nowhere"})
        assert (empty.status_code, empty.content) == (200, b"timestamp,value,category\n")
        for format_name in ("parquet", "arrow"):
            nothing = http.get("/export", params={"category": "nowhere", "format": format_name})
            assert len(read_back(format_name, nothing.content)[0]) == 0


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_million_reading_export_streams_within_a_few_chunks_of_memory(
    loaded: tuple[ServerProcess, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    api, _ = loaded
    pid = api.process.pid
    with api_http(api, timeout=120) as http:
        for format_name in ("csv", "parquet"):  # pyarrow and the first buffers loaded: the baseline
            http.get("/export", params={"format": format_name, "since": "2024-01-20T10:00:00.5Z"}).raise_for_status()
        for format_name in ("csv", "parquet", "arrow"):
            before = vm_hwm(pid)
            size = 0
            with http.stream("GET", "/export", params={"format": format_name}) as response:
                for data in response.iter_bytes():
                    size += len(data)
            grown = vm_hwm(pid) - before
            # The whole CSV export is 40+ MB of text (its readings 18 MB as columns): a function
            # that held it would grow by that much at least. A chunk is 65,536 readings.
            assert size > 7_000_000
            assert grown < 24 * 1024 * 1024, (format_name, grown, size)


def test_a_client_that_leaves_mid_export_ends_it_cleanly(
    loaded: tuple[ServerProcess, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    # The export runs as a pipeline (the next chunk received while one is encoded in a thread): a
    # client that goes away mid-way ends it, the chunk in flight and the ingestor's call with it.
    api, _ = loaded
    logged = len(api.output)
    with api_http(api, timeout=60) as http:
        for format_name in ("csv", "parquet"):
            with http.stream("GET", "/export", params={"format": format_name}) as response:
                first = next(response.iter_raw())
                assert first
        assert http.get("/export", params={"format": "csv", "category": "east", "since": "2024-01-20T10:16:00Z"}).text

    def logged_lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in api.output[logged:] if line.startswith("{")]

    def exports() -> list[int]:
        return [line["status"] for line in logged_lines() if line.get("path") == "/api/v1/export"]

    wait_until(lambda: len(exports()) == 3, 5, "the three exports were not all logged")
    assert exports() == [200, 200, 200]
    assert [line for line in logged_lines() if line["level"] in ("ERROR", "CRITICAL")] == []


def test_processed_data_rows_in_every_format(
    loaded: tuple[ServerProcess, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    api, _ = loaded
    params = {"window": "1s", "step": "1s", "stats": "min,first_timestamp,late", "grace": "0s", "category": "east"}
    with api_http(api, timeout=60) as http:
        records = http.get("/processed-data", params=params).json()
        assert records
        assert list(records[0]) == [
            "category",
            "avg_value",
            "count",
            "last_timestamp",
            "window_start",
            "window_end",
            "closed",
            "min",
            "first_timestamp",
            "late",
        ]
        csv_text = http.get("/processed-data", params={**params, "format": "csv"}).text
        frame = pd.read_csv(io.StringIO(csv_text), dtype={"category": str})
        assert frame.to_dict("records") == records  # "true"/"false" read back as booleans
        ndjson = http.get("/processed-data", params=params, headers={"Accept": "application/x-ndjson"})
        assert [json.loads(line) for line in ndjson.text.splitlines()] == records
        table = pq.read_table(io.BytesIO(http.get("/processed-data", params={**params, "format": "parquet"}).content))
        assert table.column_names == list(records[0])
        assert table["count"].to_pylist() == [r["count"] for r in records]
        assert table["window_start"].type == pa.timestamp("ns", tz="UTC")
        assert [t.isoformat() for t in table["window_start"].to_pylist()][:3] == [
            r["window_start"].replace("Z", "+00:00").replace(".000000", "") for r in records[:3]
        ]
        stream = pa.ipc.open_stream(http.get("/processed-data", params={**params, "format": "arrow"}).content)
        assert stream.read_all()["late"].to_pylist() == [r["late"] for r in records]
        # Without format (and with a JSON Accept) the answer is JSON, byte for byte as before.
        plain = http.get("/processed-data")
        assert plain.content == http.get("/processed-data", headers={"Accept": "application/json"}).content
        assert plain.headers["content-type"] == "application/json"


def test_importing_the_app_does_not_load_pyarrow_an_export_does(
    loaded: tuple[ServerProcess, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    probe = "import sys, functions.app; print('pyarrow' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


# --- behind API Gateway + Lambda ------------------------------------------------------------


@pytest.fixture
def lambda_ingestor(
    make_ingestor: MakeIngestor, monkeypatch: pytest.MonkeyPatch, lambda_main_thread_loop: None
) -> Iterator[ThreadedIngestor]:
    ingestor = make_ingestor(capacity=700_000)
    ingestor.stop_generator()
    rng = np.random.default_rng(1)
    n = 700_000  # past 6 MB in every format, Parquet too
    push(
        ingestor.address,
        T0 + np.arange(n, dtype=np.int64) * 1000,
        rng.normal(0, 1, n),
        rng.integers(0, 2, n).astype(np.uint16),
        ["A", "B"],
    )
    monkeypatch.setenv("INGESTOR_ADDRESS", ingestor.address)
    get_settings.cache_clear()
    yield ingestor
    get_settings.cache_clear()


@pytest.mark.parametrize("make_event", [rest_v1_event, http_v2_event], ids=["rest-v1", "http-v2"])
def test_behind_lambda_an_export_over_6_mb_is_a_413_with_advice(
    lambda_ingestor: ThreadedIngestor, make_event: Any
) -> None:
    for format_name in ("csv", "ndjson", "parquet", "arrow"):
        answer = handler(make_event("GET", "/api/v1/export", {"format": format_name}), LambdaContext())
        assert answer["statusCode"] == 413, (format_name, answer["statusCode"])
        detail = json.loads(answer["body"])["detail"]
        assert "6,291,456" in detail, detail
        assert "since and until" in detail, detail
    # Narrowed, it fits, and comes whole.
    narrow = {"format": "csv", "since": "2024-01-20T10:00:00Z", "until": "2024-01-20T10:00:00.01Z"}
    answer = handler(make_event("GET", "/api/v1/export", narrow), LambdaContext())
    assert answer["statusCode"] == 200
    lines = answer["body"].splitlines()
    assert lines[0] == "timestamp,value,category"
    assert len(lines) == 1 + 10_000
    ndjson = handler(make_event("GET", "/api/v1/export", {**narrow, "format": "ndjson"}), LambdaContext())
    assert ndjson["isBase64Encoded"] is False
    assert len(ndjson["body"].splitlines()) == 10_000


def test_an_export_of_at_most_6_mb_through_lambda_is_whole(lambda_ingestor: ThreadedIngestor) -> None:
    # 150,000 readings as Parquet: well under the limit once base64-encoded.
    query = {"format": "parquet", "until": "2024-01-20T10:00:00.15Z"}
    answer = handler(http_v2_event("GET", "/api/v1/export", query), LambdaContext())
    assert answer["statusCode"] == 200
    assert answer["isBase64Encoded"] is True
    table = pq.read_table(io.BytesIO(base64.b64decode(answer["body"])))
    assert table.num_rows == 150_000
