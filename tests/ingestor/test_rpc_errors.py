"""One error decorator for unary and streaming RPCs: each domain error ends the call with its status,
after whatever messages were sent; anything unexpected with INTERNAL and a generic message."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from devtools.processes import ThreadedIngestor
from ingestor import watch_stream
from ingestor.errors import (
    CategoryLimitError,
    ConfigConflict,
    InvalidArgument,
    JournalError,
    ShuttingDown,
    SubscriberDropped,
    TooManySubscribers,
)
from ingestor.rpc_errors import rpc_errors
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

SERVICE = "test.Faulty"
SENT = [b"first", b"second"]
GENERIC = "internal error in the ingestor"

CASES = [
    (InvalidArgument("categories[0]: bad"), grpc.StatusCode.INVALID_ARGUMENT, "categories[0]: bad"),
    (CategoryLimitError("too many names"), grpc.StatusCode.RESOURCE_EXHAUSTED, "too many names"),
    (TooManySubscribers("at most 2"), grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 2"),
    (SubscriberDropped("fell behind"), grpc.StatusCode.RESOURCE_EXHAUSTED, "fell behind"),
    (ConfigConflict("stop first"), grpc.StatusCode.FAILED_PRECONDITION, "stop first"),
    (JournalError("disk gone"), grpc.StatusCode.UNAVAILABLE, "disk gone"),
    (ShuttingDown("the ingestor is shutting down"), grpc.StatusCode.UNAVAILABLE, "the ingestor is shutting down"),
    (RuntimeError("secret /etc/path"), grpc.StatusCode.INTERNAL, GENERIC),
    (KeyError("secret"), grpc.StatusCode.INTERNAL, GENERIC),
]


class Faulty:
    """Each method sends SENT (the unary one cannot), then raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @rpc_errors
    async def Unary(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise self.error

    @rpc_errors
    async def Yielding(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        for message in SENT:
            yield message
        raise self.error

    @rpc_errors
    async def Writing(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        for message in SENT:
            await context.write(message)
        raise self.error


@asynccontextmanager
async def serving(faulty: Faulty) -> AsyncIterator[str]:
    """Serve ``faulty`` on a free loopback port and yield its address; stop it at the end."""
    server = grpc.aio.server()
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(faulty.Unary),
        "Yielding": grpc.unary_stream_rpc_method_handler(faulty.Yielding),
        "Writing": grpc.unary_stream_rpc_method_handler(faulty.Writing),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    try:
        yield address
    finally:
        await server.stop(0)


async def read_all(call: AsyncIterator[Any], into: list[Any]) -> None:
    async for message in call:
        into.append(message)


@pytest.mark.anyio
@pytest.mark.parametrize(("error", "code", "details"), CASES, ids=[type(case[0]).__name__ for case in CASES])
async def test_each_error_ends_unary_and_streaming_calls_with_its_status(
    error: Exception, code: grpc.StatusCode, details: str
) -> None:
    async with serving(Faulty(error)) as address, grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await channel.unary_unary(f"/{SERVICE}/Unary")(b"", timeout=5)
        assert (unary.value.code(), unary.value.details()) == (code, details)
        for method in ("Yielding", "Writing"):
            received: list[Any] = []
            call = channel.unary_stream(f"/{SERVICE}/{method}")(b"", timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as streaming:
                await read_all(call, received)
            assert received == SENT, method  # what was sent before the error still arrives
            assert (streaming.value.code(), streaming.value.details()) == (code, details), method


def test_the_decorated_methods_keep_their_kind() -> None:
    assert inspect.iscoroutinefunction(Faulty.Unary)
    assert inspect.isasyncgenfunction(Faulty.Yielding)
    assert inspect.iscoroutinefunction(Faulty.Writing)


@pytest.fixture
def watching_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoding a live message fails, as a bug would make it."""

    def broken(*_: object) -> bytes:
        raise RuntimeError("encoder broke at /secret/place")

    monkeypatch.setattr(watch_stream, "watch_message", broken)


@pytest.mark.usefixtures("watching_fails")
def test_an_unexpected_error_in_a_live_stream_is_internal_not_unknown(ingestor: ThreadedIngestor) -> None:
    with grpc.insecure_channel(ingestor.address) as channel:
        stub = pb_grpc.IngestorServiceStub(channel)
        call = stub.WatchReadings(pb.WatchReadingsRequest(), timeout=10)
        call.initial_metadata()  # subscribed
        written = pb.WriteReadingsRequest(readings=[pb.Reading(value=1.5, category="A")])
        written.readings[0].timestamp.FromNanoseconds(1)
        stub.WriteReadings(written, timeout=5)
        with pytest.raises(grpc.RpcError) as ended:
            next(iter(call))
    assert ended.value.code() == grpc.StatusCode.INTERNAL
    assert ended.value.details() == GENERIC
