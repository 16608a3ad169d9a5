from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from devtools.processes import ServerProcess, ThreadedIngestor, start_api_process, start_ingestor_process
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc

# The crash tests' checks live in a helper module: give their asserts pytest's detailed messages.
pytest.register_assert_rewrite("tests.support.crashing")


@pytest.fixture
def lambda_main_thread_loop() -> Iterator[None]:
    """A fresh current event loop in the main thread, as a new Lambda process has.

    Mangum runs each invocation on the thread's current loop, and tests that ran asyncio.run()
    before leave none set.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ingestor() -> Iterator[ThreadedIngestor]:
    """A real ingestor server on a free loopback port, in this process (rate 1 Hz, capacity 1000)."""
    server = ThreadedIngestor(capacity=1000)
    yield server
    server.close()


@pytest.fixture
def channel(ingestor: ThreadedIngestor) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(ingestor.address) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.IngestorServiceStub:
    return pb_grpc.IngestorServiceStub(channel)


@pytest.fixture
def ingestor_process() -> Iterator[ServerProcess]:
    """``python -m ingestor`` as a subprocess on a free port."""
    process = start_ingestor_process(capacity=100_000, rate_hz=50)
    yield process
    process.stop()


@pytest.fixture
def api_process(ingestor_process: ServerProcess) -> Iterator[ServerProcess]:
    """``uvicorn functions.app:app`` as a subprocess on a free port, pointed at ingestor_process."""
    process = start_api_process(ingestor_process.address)
    yield process
    process.stop()
