"""Who may call the ingestor, over what, and with how large a message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ingestor.settings import IngestorSettings
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.certs import make_self_signed
from tests.harness import ThreadedIngestor, start_ingestor_process

TOKEN = "s3cret-token-for-tests"
T0 = 1_705_744_800


@pytest.fixture
def guarded() -> Iterator[ThreadedIngestor]:
    server = ThreadedIngestor(capacity=100, token=TOKEN)
    yield server
    server.close()


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
    assert guarded.running.ingestion.running is False


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


def test_refused_calls_are_logged_with_their_request_id() -> None:
    process = start_ingestor_process(token=TOKEN)
    try:
        with grpc.insecure_channel(process.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            rpc_error(
                lambda: stub.GetStatus(pb.GetStatusRequest(), metadata=(("x-request-id", "no-token-1"),), timeout=5)
            )
    finally:
        assert process.stop() == 0
    entries = [json.loads(line) for line in process.output]
    refused = next(entry for entry in entries if entry.get("request_id") == "no-token-1")
    assert (refused["code"], refused["method"]) == ("UNAUTHENTICATED", "/ingestor.v1.IngestorService/GetStatus")
    assert TOKEN not in "".join(process.output)


def test_tls_from_configured_files(tmp_path: Path) -> None:
    files = make_self_signed(tmp_path)
    server = ThreadedIngestor(capacity=10, tls_cert_file=files.certificate, tls_key_file=files.key)
    try:
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
    finally:
        server.close()


def test_a_request_beyond_the_configured_size_is_resource_exhausted() -> None:
    server = ThreadedIngestor(capacity=100_000, max_message_bytes=64 * 1024)
    try:
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
    finally:
        server.close()


def test_settings_reject_half_a_tls_pair(tmp_path: Path) -> None:
    files = make_self_signed(tmp_path)
    with pytest.raises(ValueError, match="must be set together"):
        ThreadedIngestor(tls_cert_file=files.certificate)


def test_logs_are_json_lines_with_the_callers_request_id() -> None:
    process = start_ingestor_process(log_level="DEBUG")
    try:
        with grpc.insecure_channel(process.address) as channel:
            stub = pb_grpc.IngestorServiceStub(channel)
            stub.GetStatus(pb.GetStatusRequest(), metadata=(("x-request-id", "req-123"),), timeout=5)
            rpc_error(
                lambda: stub.ListReadings(
                    pb.ListReadingsRequest(page_size=-1), metadata=(("x-request-id", "req-456"),), timeout=5
                )
            )
    finally:
        assert process.stop() == 0
    entries = [json.loads(line) for line in process.output]
    calls = {entry["request_id"]: entry for entry in entries if entry["message"] == "rpc"}
    assert calls["req-123"]["method"] == "/ingestor.v1.IngestorService/GetStatus"
    assert calls["req-123"]["code"] == "OK"
    assert calls["req-456"]["code"] == "INVALID_ARGUMENT"
    assert {"time", "level", "logger", "duration_ms"} <= set(calls["req-456"])
