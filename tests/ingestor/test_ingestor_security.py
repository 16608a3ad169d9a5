"""Who may call the ingestor, over what, and with how large a message."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from devtools.processes import ThreadedIngestor
from ingestor.settings import IngestorSettings
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.certs import make_self_signed
from tests.support.factories import MakeIngestor, MakeProcess

TOKEN = "s3cret-token-for-tests"
T0 = 1_705_744_800


@pytest.fixture
def guarded(make_ingestor: MakeIngestor) -> ThreadedIngestor:
    return make_ingestor(capacity=100, token=TOKEN)


def rpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize(
    ("metadata", "details"),
    [
        ((), "a bearer token is required"),
        ((("authorization", "Bearer wrong"),), "the bearer token is not valid"),
        ((("authorization", TOKEN),), "the bearer token is not valid"),
        ((("authorization", f"Bearer {TOKEN} "),), "the bearer token is not valid"),
    ],
)
def test_a_missing_or_wrong_token_is_unauthenticated_on_every_rpc(
    guarded: ThreadedIngestor, metadata: tuple[tuple[str, str], ...], details: str
) -> None:
    with grpc.insecure_channel(guarded.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        calls = [
            lambda: stub.StartIngestion(pb.StartIngestionRequest(), metadata=metadata, timeout=5),
            lambda: stub.StopIngestion(pb.StopIngestionRequest(), metadata=metadata, timeout=5),
            lambda: stub.GetStatus(pb.GetStatusRequest(), metadata=metadata, timeout=5),
            lambda: stub.ListReadings(pb.ListReadingsRequest(), metadata=metadata, timeout=5),
            lambda: list(stub.ExportReadings(pb.ExportReadingsRequest(), metadata=metadata, timeout=5)),
            lambda: stub.WriteReadings(
                pb.WriteReadingsRequest(
                    readings=[pb.Reading(timestamp={"seconds": T0}, value=1.0, category="A")],
                ),
                metadata=metadata,
                timeout=5,
            ),
        ]
        for call in calls:
            error = rpc_error(call)
            assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, details)
            assert TOKEN not in (error.details() or "")
    # Nothing was started or written.
    assert guarded.running.store.total_ingested == 0
    assert guarded.running.generator.running is False


def test_the_right_token_passes_and_health_and_reflection_stay_open(guarded: ThreadedIngestor) -> None:
    with grpc.insecure_channel(guarded.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        written = stub.WriteReadings(
            pb.WriteReadingsRequest(readings=[pb.Reading(timestamp={"seconds": T0}, value=2.5, category="A")]),
            metadata=metadata,
            timeout=5,
        )
        assert written.accepted == 1
        assert stub.GetStatus(pb.GetStatusRequest(), metadata=metadata, timeout=5).total_ingested == 1

        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        names = {service.name for service in answers[0].list_services_response.service}
        assert "ingestor.v1.IngestorService" in names


def test_the_ingestor_listens_on_loopback_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGESTOR_HOST", raising=False)
    assert IngestorSettings().host == "127.0.0.1"
    monkeypatch.setenv("INGESTOR_HOST", "0.0.0.0")
    assert IngestorSettings().host == "0.0.0.0"


def test_refused_calls_are_logged_with_their_request_id(make_ingestor_process: MakeProcess) -> None:
    process = make_ingestor_process(token=TOKEN)
    with grpc.insecure_channel(process.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        rpc_error(lambda: stub.GetStatus(pb.GetStatusRequest(), metadata=(("x-request-id", "no-token-1"),), timeout=5))
    assert process.stop() == 0
    entries = [json.loads(line) for line in process.output]
    refused = next(entry for entry in entries if entry.get("request_id") == "no-token-1")
    assert (refused["code"], refused["method"]) == ("UNAUTHENTICATED", "/ingestor.v1.IngestorService/GetStatus")
    assert TOKEN not in "".join(process.output)


def test_tls_from_configured_files(tmp_path: Path, make_ingestor: MakeIngestor) -> None:
    files = make_self_signed(tmp_path)
    server = make_ingestor(capacity=10, tls_cert_file=files.certificate, tls_key_file=files.key)
    credentials = grpc.ssl_channel_credentials(root_certificates=files.certificate.read_bytes())
    with grpc.secure_channel(server.address, credentials) as channel:
        status = pb_grpc.IngestorServiceStub(channel).GetStatus(pb.GetStatusRequest(), timeout=5)
        assert status.capacity == 10
    # Plaintext is refused: the server speaks TLS only.
    with grpc.insecure_channel(server.address) as channel:
        error = rpc_error(lambda: pb_grpc.IngestorServiceStub(channel).GetStatus(pb.GetStatusRequest(), timeout=5))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
    # A client that trusts another certificate does not connect.
    other = make_self_signed(tmp_path, common_name="other.test")
    credentials = grpc.ssl_channel_credentials(root_certificates=other.certificate.read_bytes())
    with grpc.secure_channel(server.address, credentials) as channel:
        error = rpc_error(lambda: pb_grpc.IngestorServiceStub(channel).GetStatus(pb.GetStatusRequest(), timeout=5))
        assert error.code() is grpc.StatusCode.UNAVAILABLE


def test_a_request_beyond_the_configured_size_is_resource_exhausted(make_ingestor: MakeIngestor) -> None:
    server = make_ingestor(capacity=100_000, max_message_bytes=64 * 1024)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        small = [pb.Reading(timestamp={"seconds": T0}, value=1.0, category="A")] * 100
        assert stub.WriteReadings(pb.WriteReadingsRequest(readings=small), timeout=5).accepted == 100
        large = pb.WriteReadingsRequest(readings=small * 100)
        assert large.ByteSize() > 64 * 1024
        error = rpc_error(lambda: stub.WriteReadings(large, timeout=5))
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "65536" in (error.details() or "")
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).total_ingested == 100


# The largest push the function makes: 10,000 readings (POST /api/v1/readings' limit), each with a
# category of its own of the longest kind, a timestamp before 1970 (negative seconds are ten-byte
# varints) with nanos, a value, and the longest batch id. Sizes worked out field by field:
PUSH = 10_000
NAME = 64
BATCH_ID = 131  # tag, two-byte length, 128 characters
TIMESTAMP = (1 + 10) + (1 + 5)  # seconds and nanos (up to 999,999,999), each after its tag
READING = (2 + TIMESTAMP) + (1 + 8) + (2 + NAME)  # each field after its tag (and length)
MESSAGE_FORM = PUSH * (2 + READING) + BATCH_ID  # 96 bytes a reading
COLUMN = 1 + 3  # tag and a three-byte length, ahead of each column's bytes
COLUMN_FORM = (1 + 3) + 2 * (COLUMN + 8 * PUSH) + (COLUMN + 2 * PUSH) + PUSH * (2 + NAME) + BATCH_ID


def largest_pushes() -> tuple[pb.WriteReadingsRequest, pb.WriteReadingsRequest]:
    names = [f"{i:0{NAME}d}" for i in range(PUSH)]
    batch_id = "b" * 128
    messages = pb.WriteReadingsRequest(
        batch_id=batch_id,
        readings=[
            pb.Reading(timestamp={"seconds": -(10**9), "nanos": 999_999_999}, value=-1.5e300, category=name)
            for name in names
        ],
    )
    columns = pb.WriteReadingsRequest(
        batch_id=batch_id[:-1] + "c",
        columns=pb.ReadingColumns(
            timestamps_ns=np.arange(PUSH, dtype="<i8").tobytes(),
            values=np.full(PUSH, -1.5e300).tobytes(),
            category_codes=np.arange(PUSH, dtype="<u2").tobytes(),
        ),
        column_categories=names,
    )
    return messages, columns


def test_the_default_message_limit_holds_the_largest_push_four_times_over(make_ingestor: MakeIngestor) -> None:
    messages, columns = largest_pushes()
    assert (messages.ByteSize(), columns.ByteSize()) == (MESSAGE_FORM, COLUMN_FORM) == (960_131, 840_147)
    limit = IngestorSettings().max_message_bytes
    assert limit == 4 * 1024 * 1024
    assert 4 * max(MESSAGE_FORM, COLUMN_FORM) < limit
    server = make_ingestor(capacity=2 * PUSH)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        assert stub.WriteReadings(messages, timeout=10).accepted == PUSH
        assert stub.WriteReadings(columns, timeout=10).accepted == PUSH
        assert stub.GetStatus(pb.GetStatusRequest(), timeout=5).total_ingested == 2 * PUSH


def test_settings_reject_half_a_tls_pair(tmp_path: Path, make_ingestor: MakeIngestor) -> None:
    files = make_self_signed(tmp_path)
    with pytest.raises(ValueError, match="must be set together"):
        make_ingestor(tls_cert_file=files.certificate)


def test_logs_are_json_lines_with_the_callers_request_id(make_ingestor_process: MakeProcess) -> None:
    process = make_ingestor_process(log_level="DEBUG")
    with grpc.insecure_channel(process.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        stub.GetStatus(pb.GetStatusRequest(), metadata=(("x-request-id", "req-123"),), timeout=5)
        rpc_error(
            lambda: stub.ListReadings(
                pb.ListReadingsRequest(page_size=-1), metadata=(("x-request-id", "req-456"),), timeout=5
            )
        )
    assert process.stop() == 0
    entries = [json.loads(line) for line in process.output]
    calls = {entry["request_id"]: entry for entry in entries if entry["message"] == "rpc"}
    assert calls["req-123"]["method"] == "/ingestor.v1.IngestorService/GetStatus"
    assert calls["req-123"]["code"] == "OK"
    assert calls["req-456"]["code"] == "INVALID_ARGUMENT"
    assert {"time", "level", "logger", "duration_ms"} <= set(calls["req-456"])


def vm_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def message_form_write(count: int) -> bytes:
    """A serialised WriteReadings request of ``count`` readings as messages, 22 bytes each.

    Serialised messages concatenate into one whose repeated fields hold both, so the request is
    one reading's bytes repeated (the readings are all alike: the server never gets to look).
    """
    one = pb.WriteReadingsRequest(readings=[pb.Reading(timestamp={"seconds": T0}, value=1.5, category="A")])
    return one.SerializeToString() * count


# 36 callers at once with 188 MB between them: most just under the default message size limit,
# a few far beyond it; half without a token, half with a wrong one. Decoding each request before
# refusing it grew the ingestor by 400 MiB and more; refused unread, each costs what HTTP/2 flow
# control lets a caller send before its answer (64 KiB), and the ingestor grows by about 1 MiB.
UNAUTHENTICATED_CALLERS = 36
OVERSIZED = 4
RSS_GROWTH_BOUND = 16 * 1024 * 1024


def test_unauthenticated_writes_are_refused_before_their_messages_are_received(
    make_ingestor_process: MakeProcess,
) -> None:
    near_limit = message_form_write(180_000)
    oversized = message_form_write(700_000)
    assert 3_900_000 < len(near_limit) < IngestorSettings().max_message_bytes < 15_000_000 < len(oversized)
    process = make_ingestor_process(token=TOKEN, capacity=1000)
    pid = process.process.pid
    with contextlib.ExitStack() as opened:
        channels = [
            opened.enter_context(grpc.insecure_channel(process.address)) for _ in range(UNAUTHENTICATED_CALLERS + 1)
        ]
        authorized = pb_grpc.IngestorServiceStub(channels[-1])
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        assert authorized.GetStatus(pb.GetStatusRequest(), metadata=metadata, timeout=5).total_ingested == 0
        time.sleep(0.3)
        before = vm_rss_bytes(pid)
        peak = before
        sending = threading.Event()
        sending.set()

        def sample() -> None:
            nonlocal peak
            while sending.is_set():
                peak = max(peak, vm_rss_bytes(pid))
                time.sleep(0.002)

        def write(index: int) -> tuple[grpc.StatusCode, str]:
            raw = oversized if index < OVERSIZED else near_limit
            call = channels[index].unary_unary(
                "/ingestor.v1.IngestorService/WriteReadings", request_serializer=None, response_deserializer=None
            )
            given = () if index % 2 else (("authorization", "Bearer wrong"),)
            error = rpc_error(lambda: call(raw, metadata=given, timeout=30))
            return error.code(), error.details() or ""

        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(UNAUTHENTICATED_CALLERS) as pool:
            answers = list(pool.map(write, range(UNAUTHENTICATED_CALLERS)))
        time.sleep(0.3)
        sending.clear()
        sampler.join()
        peak = max(peak, vm_rss_bytes(pid))

        assert peak - before < RSS_GROWTH_BOUND, f"RSS grew by {(peak - before) / 2**20:.1f} MiB"
        assert answers == [
            (
                grpc.StatusCode.UNAUTHENTICATED,
                "a bearer token is required" if index % 2 else "the bearer token is not valid",
            )
            for index in range(UNAUTHENTICATED_CALLERS)
        ]
        # Nothing was stored, and the ingestor still serves callers with the token.
        written = authorized.WriteReadings(
            pb.WriteReadingsRequest(readings=[pb.Reading(timestamp={"seconds": T0}, value=1.0, category="A")]),
            metadata=metadata,
            timeout=5,
        )
        assert written.accepted == 1
        assert authorized.GetStatus(pb.GetStatusRequest(), metadata=metadata, timeout=5).total_ingested == 1
    assert process.stop() == 0
