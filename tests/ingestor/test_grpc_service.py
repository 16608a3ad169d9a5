"""Every RPC against a real gRPC server on a free loopback port."""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devtools.waiting import wait_until
from functions.wire import decode_export
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor, MakeProcess

T0 = 1_705_744_800  # 2024-01-20T10:00:00Z


def reading(seconds: int, value: float, category: str, nanos: int = 0) -> pb.Reading:
    return pb.Reading(timestamp={"seconds": seconds, "nanos": nanos}, value=value, category=category)


def status(stub: pb_grpc.IngestorServiceStub) -> pb.GetStatusResponse:
    return stub.GetStatus(pb.GetStatusRequest(), timeout=5)


def abort_of(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_start_stop_status_are_idempotent(stub: pb_grpc.IngestorServiceStub) -> None:
    assert status(stub).running is False
    assert stub.StartIngestion(pb.StartIngestionRequest()).already_running is False
    assert stub.StartIngestion(pb.StartIngestionRequest()).already_running is True
    wait_until(lambda: status(stub).total_ingested, 5, "nothing was generated")
    running = status(stub)
    assert running.running is True
    assert running.total_ingested >= 1
    assert running.capacity == 1000
    assert running.rate_hz == 1.0
    assert stub.StopIngestion(pb.StopIngestionRequest()).already_stopped is False
    assert stub.StopIngestion(pb.StopIngestionRequest()).already_stopped is True
    stopped = status(stub)
    assert stopped.running is False
    assert stopped.total_ingested == stopped.buffered + stopped.evicted >= 1


def test_write_then_list_and_export(stub: pb_grpc.IngestorServiceStub) -> None:
    written = [reading(T0 + i, 40.0 + i, "AB"[i % 2], nanos=i) for i in range(250)]
    assert stub.WriteReadings(pb.WriteReadingsRequest(readings=written)).accepted == 250
    assert (status(stub).total_ingested, status(stub).buffered) == (250, 250)

    pages = []
    token = ""
    while True:
        page = stub.ListReadings(pb.ListReadingsRequest(page_size=100, page_token=token))
        pages.append(list(page.readings))
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [100, 100, 50]  # newest first, each page oldest first
    assert pages[0][0] == written[150]
    assert pages[0][-1] == written[249]
    assert [r for p in reversed(pages) for r in p] == written

    exported = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(chunk_size=64)))
    assert len(exported) == 250
    assert exported.timestamps_ns.tolist() == [(T0 + i) * 10**9 + i for i in range(250)]
    assert exported.values.tolist() == [40.0 + i for i in range(250)]
    assert [exported.categories[c] for c in exported.codes] == ["AB"[i % 2] for i in range(250)]

    newest = decode_export(stub.ExportReadings(pb.ExportReadingsRequest(max_readings=3)))
    assert newest.values.tolist() == [287.0, 288.0, 289.0]


def test_export_chunks_stay_small_and_send_the_dictionary_once(stub: pb_grpc.IngestorServiceStub) -> None:
    n = 200_000
    columns = pb.ReadingColumns(
        timestamps_ns=np.arange(n, dtype="<i8").tobytes(),
        values=np.ones(n, dtype="<f8").tobytes(),
        category_codes=(np.arange(n) % 3).astype("<u2").tobytes(),
    )
    request = pb.WriteReadingsRequest(columns=columns, column_categories=["x", "y", "z"])
    assert stub.WriteReadings(request).accepted == n
    messages = list(stub.ExportReadings(pb.ExportReadingsRequest()))
    assert all(message.ByteSize() < 2 * 1024 * 1024 for message in messages)
    assert [list(m.new_categories) for m in messages] == [["x", "y", "z"]] + [[]] * (len(messages) - 1)
    # The first message says how many are coming, so a reader can allocate once.
    chunked = list(stub.ExportReadings(pb.ExportReadingsRequest(chunk_size=300)))
    assert [m.planned_readings for m in chunked] == [1000, 0, 0, 0]
    assert [len(m.columns.values) // 8 for m in chunked] == [300, 300, 300, 100]
    selected = list(stub.ExportReadings(pb.ExportReadingsRequest(chunk_size=300, categories=["x"])))
    assert [m.planned_readings for m in selected] == [sum(i % 3 == 0 for i in range(n - 1000, n)), 0]
    # The buffer holds 1000: the newest ones.
    assert decode_export(messages).timestamps_ns.tolist() == list(range(n - 1000, n))


def test_an_export_as_a_parquet_file_comes_in_row_groups_then_the_footer(stub: pb_grpc.IngestorServiceStub) -> None:
    n = 1000
    columns = pb.ReadingColumns(
        timestamps_ns=(np.arange(n, dtype="<i8") * 1_000 + T0 * 10**9).tobytes(),
        values=np.linspace(0, 1, n).astype("<f8").tobytes(),
        category_codes=(np.arange(n) % 3).astype("<u2").tobytes(),
    )
    stub.WriteReadings(pb.WriteReadingsRequest(columns=columns, column_categories=["x", "y", "z"]))
    request = pb.ExportReadingsRequest(chunk_size=300, categories=["x", "z"], format=pb.EXPORT_FORMAT_PARQUET)
    messages = list(stub.ExportReadings(request))
    wanted = [i for i in range(n) if i % 3 != 1]
    assert all(message.format == pb.EXPORT_FORMAT_PARQUET for message in messages)
    assert [m.data_readings for m in messages] == [300, 300, len(wanted) - 600, 0]  # the footer last
    assert messages[0].planned_readings == len(wanted)
    assert not any(m.HasField("columns") or m.new_categories for m in messages)
    table = pq.read_table(io.BytesIO(b"".join(m.data for m in messages)))
    assert table["timestamp"].cast(pa.int64()).to_pylist() == [T0 * 10**9 + i * 1_000 for i in wanted]
    assert table["value"].to_pylist() == np.linspace(0, 1, n)[wanted].tolist()
    assert table["category"].cast(pa.string()).to_pylist() == ["xyz"[i % 3] for i in wanted]
    # Nothing matches: still a whole (empty) file.
    none = list(stub.ExportReadings(pb.ExportReadingsRequest(categories=["w"], format=pb.EXPORT_FORMAT_PARQUET)))
    assert pq.read_table(io.BytesIO(b"".join(m.data for m in none))).num_rows == 0


def test_an_export_as_csv_comes_as_lines_after_the_header(stub: pb_grpc.IngestorServiceStub) -> None:
    stamps = [T0 * 10**9 + i * 1_500 for i in range(5)]
    columns = pb.ReadingColumns(
        timestamps_ns=np.array(stamps, dtype="<i8").tobytes(),
        values=np.array([1.5, -2.0, 0.0, 1e-7, 123.25], dtype="<f8").tobytes(),
        category_codes=np.array([0, 1, 0, 1, 0], dtype="<u2").tobytes(),
    )
    stub.WriteReadings(pb.WriteReadingsRequest(columns=columns, column_categories=["x", "y"]))
    request = pb.ExportReadingsRequest(chunk_size=2, format=pb.EXPORT_FORMAT_CSV)
    messages = list(stub.ExportReadings(request))
    assert all(message.format == pb.EXPORT_FORMAT_CSV for message in messages)
    assert [m.data_readings for m in messages] == [2, 2, 1, 0]
    assert b"".join(m.data for m in messages).decode().splitlines() == [
        "timestamp,value,category",
        "2024-01-20T10:00:00.000000Z,1.5,x",
        "2024-01-20T10:00:00.000001Z,-2,y",  # 1,500 ns: truncated to the microsecond
        "2024-01-20T10:00:00.000003Z,0,x",
        "2024-01-20T10:00:00.000004Z,1e-7,y",  # Arrow's form outside the plain range
        "2024-01-20T10:00:00.000006Z,123.25,x",
    ]
    none = list(stub.ExportReadings(pb.ExportReadingsRequest(categories=["w"], format=pb.EXPORT_FORMAT_CSV)))
    assert b"".join(m.data for m in none) == b"timestamp,value,category\n"


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"format": pb.EXPORT_FORMAT_PARQUET, "late_flags": True}, "late_flags are for columns"),
        ({"format": 7}, "format 7 is not an ExportFormat"),
    ],
)
def test_a_file_export_it_cannot_make_is_invalid(
    stub: pb_grpc.IngestorServiceStub, request_fields: dict[str, object], message: str
) -> None:
    error = abort_of(lambda: list(stub.ExportReadings(pb.ExportReadingsRequest(**request_fields))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(error.details())


def test_the_oldest_are_evicted_and_counted(stub: pb_grpc.IngestorServiceStub) -> None:
    for batch in range(3):
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(T0 + batch, i, "A") for i in range(600)]))
    final = status(stub)
    assert (final.total_ingested, final.buffered, final.evicted) == (1800, 1000, 800)


@pytest.mark.parametrize(
    ("readings", "message"),
    [
        ([reading(T0, 1, "A"), reading(T0, float("nan"), "A")], "readings[1].value must be a finite number"),
        ([reading(T0, float("inf"), "A")], "readings[0].value must be a finite number"),
        ([reading(T0, 1, "A"), pb.Reading(value=1, category="A")], "readings[1].timestamp is missing"),
        ([reading(T0, 1, "")], "readings[0].category"),
        ([reading(T0, 1, "A"), reading(T0, 1, "no spaces")], "readings[1].category"),
        ([reading(T0, 1, "x" * 65)], "readings[0].category"),
        # A bad name used again is named at its first use.
        ([reading(T0, 1, "A"), reading(T0, 1, "b d"), reading(T0, 1, "A"), reading(T0, 1, "b d")], "readings[1].cat"),
        ([reading(10**12, 1, "A")], "readings[0].timestamp must lie between"),
    ],
)
def test_bad_writes_are_invalid_argument_and_store_nothing(
    stub: pb_grpc.IngestorServiceStub, readings: list[pb.Reading], message: str
) -> None:
    error = abort_of(lambda: stub.WriteReadings(pb.WriteReadingsRequest(readings=readings)))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()
    assert status(stub).total_ingested == 0


@pytest.mark.parametrize(
    ("columns", "categories", "message"),
    [
        (pb.ReadingColumns(timestamps_ns=b"\0" * 7, values=b"", category_codes=b""), ["A"], "multiple of 8"),
        (pb.ReadingColumns(timestamps_ns=b"\0" * 16, values=b"\0" * 8, category_codes=b"\0" * 2), ["A"], "same number"),
        (
            pb.ReadingColumns(timestamps_ns=b"\0" * 8, values=np.array([np.nan]).tobytes(), category_codes=b"\0\0"),
            ["A"],
            "columns.values[0] must be a finite number",
        ),
        (pb.ReadingColumns(timestamps_ns=b"\0" * 8, values=b"\0" * 8, category_codes=b"\1\0"), ["A"], "code"),
        (pb.ReadingColumns(timestamps_ns=b"\0" * 16, values=b"\0" * 16, category_codes_u8=b"\0"), ["A"], "same number"),
        (pb.ReadingColumns(timestamps_ns=b"\0" * 8, values=b"\0" * 8, category_codes_u8=b"\1"), ["A"], "u8[0] is 1"),
        (pb.ReadingColumns(timestamps_ns=b"\0" * 8, values=b"\0" * 8, category_codes=b"\0\0"), ["b a d"], "column_cat"),
    ],
)
def test_bad_columnar_writes_are_invalid_argument(
    stub: pb_grpc.IngestorServiceStub, columns: pb.ReadingColumns, categories: list[str], message: str
) -> None:
    request = pb.WriteReadingsRequest(columns=columns, column_categories=categories)
    error = abort_of(lambda: stub.WriteReadings(request))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()
    assert status(stub).total_ingested == 0


def test_readings_keep_their_categories_when_the_dictionary_outgrows_a_byte(
    stub: pb_grpc.IngestorServiceStub,
) -> None:
    # The store holds codes in a byte up to 256 categories in use and widens them for the 257th.
    names = [f"c{i}" for i in range(256)]
    columns = pb.ReadingColumns(
        timestamps_ns=(np.arange(256, dtype="<i8") * 10**9).tobytes(),
        values=np.arange(256, dtype="<f8").tobytes(),
        category_codes_u8=np.arange(256, dtype="u1").tobytes(),
    )
    assert stub.WriteReadings(pb.WriteReadingsRequest(columns=columns, column_categories=names)).accepted == 256
    widening = [reading(T0 + 256, 256, "c256"), reading(T0 + 3, 3, "c3")]
    assert stub.WriteReadings(pb.WriteReadingsRequest(readings=widening)).accepted == 2
    expected = [f"c{i}" for i in range(257)] + ["c3"]
    messages = list(stub.ExportReadings(pb.ExportReadingsRequest(chunk_size=3)))
    # The store widened its codes for the 257th name: every chunk now carries two bytes a code.
    assert {message.columns.WhichOneof("codes") for message in messages} == {"category_codes"}
    exported = decode_export(messages)
    assert [exported.categories[code] for code in exported.codes] == expected
    assert exported.values.tolist() == [*range(257), 3]
    listed = stub.ListReadings(pb.ListReadingsRequest(page_size=1000)).readings
    assert [r.category for r in listed] == expected


@pytest.fixture
def roomy_stub(make_ingestor: MakeIngestor) -> Iterator[pb_grpc.IngestorServiceStub]:
    """An ingestor that holds a reading of each of 65,536 categories."""
    server = make_ingestor(capacity=70_000)
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.IngestorServiceStub(channel)


def test_too_many_categories_is_resource_exhausted(roomy_stub: pb_grpc.IngestorServiceStub) -> None:
    stub = roomy_stub
    names = [f"c{i}" for i in range(65_536)]
    columns = pb.ReadingColumns(
        timestamps_ns=np.zeros(len(names), "<i8").tobytes(),
        values=np.zeros(len(names), "<f8").tobytes(),
        category_codes=np.arange(len(names), dtype="<u2").tobytes(),
    )
    assert stub.WriteReadings(pb.WriteReadingsRequest(columns=columns, column_categories=names)).accepted == 65_536
    error = abort_of(lambda: stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(T0, 1, "new")])))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "65536" in error.details()


def test_bad_paging_and_chunking_are_invalid_argument(stub: pb_grpc.IngestorServiceStub) -> None:
    for request in (
        pb.ListReadingsRequest(page_size=-1),
        pb.ListReadingsRequest(page_token="not-a-token!"),
        pb.ListReadingsRequest(page_token="AAAAAAAAAAE"),  # well-formed, points past the end
    ):
        assert abort_of(lambda r=request: stub.ListReadings(r)).code() is grpc.StatusCode.INVALID_ARGUMENT
    error = abort_of(lambda: list(stub.ExportReadings(pb.ExportReadingsRequest(chunk_size=10**6))))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_page_size_defaults_and_caps(stub: pb_grpc.IngestorServiceStub) -> None:
    stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(T0, i, "A") for i in range(1000)]))
    assert len(stub.ListReadings(pb.ListReadingsRequest()).readings) == 100
    assert len(stub.ListReadings(pb.ListReadingsRequest(page_size=5000)).readings) == 1000


def test_health_reports_serving_then_not_serving_on_shutdown(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=10)
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "ingestor.v1.IngestorService"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        server.close()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_a_second_ingestor_on_a_taken_port_refuses_to_start(make_ingestor_process: MakeProcess) -> None:
    # gRPC shares ports between processes by default: two ingestors would split the callers
    # between two different buffers.
    first = make_ingestor_process()
    with pytest.raises(RuntimeError, match="exited with 1") as caught:
        make_ingestor_process(port=first.port)
    assert f"cannot start: cannot listen on 127.0.0.1:{first.port}: the port is in use" in str(caught.value)
    assert "Traceback" not in str(caught.value)
    with grpc.insecure_channel(first.address) as channel:
        assert pb_grpc.IngestorServiceStub(channel).GetStatus(pb.GetStatusRequest(), timeout=5).capacity > 0
