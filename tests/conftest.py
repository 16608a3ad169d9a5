"""Fixtures every test folder shares: factories of real servers that tear down whatever they started.

``make_ingestor(**settings)`` starts an ingestor in this process, ``make_ingestor_process(**settings)``
and ``make_api_process(address, **env)`` start ``python -m ingestor`` and ``python -m functions``,
``make_uvicorn_process(app, **env)`` plain uvicorn, ``make_lambda_process(**env)`` the Lambda
handler in a process that stays between invocations, ``make_stack(api_env, **settings)`` an ingestor
process and an API process in front of it; each returns the running server, and every server
a factory made is stopped when the test ends, however it ends. A test that stops one itself (to
read its exit code, to restart it) may: stopping twice is harmless.

A module-scoped fixture (servers loaded once for a module's tests) takes ``make_module_ingestor``,
``make_module_ingestor_process`` or ``make_module_api_process``: the same factories, whose servers are
stopped after the module's last test.

A test that starts a subprocess is marked ``slow``: ``make test-fast`` (``-m "not slow"``) leaves it out.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any, TypeVar

import grpc
import pytest

from devtools.processes import (
    ServerProcess,
    ThreadedIngestor,
    start_api_process,
    start_ingestor_process,
    start_uvicorn_process,
)
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.factories import MakeIngestor, MakeProcess, MakeStack
from tests.support.lambda_process import LambdaProcess

# The crash tests' checks live in a helper module: give their asserts pytest's detailed messages.
pytest.register_assert_rewrite("tests.support.crashing")

T = TypeVar("T")

SUBPROCESS_FIXTURES = frozenset(
    {
        "make_ingestor_process",
        "make_api_process",
        "make_uvicorn_process",
        "make_stack",
        "make_module_ingestor_process",
        "make_module_api_process",
        "make_lambda_process",
        "ingestor_process",
        "api_process",
    }
)
"""Fixtures that start a process: the tests that use them are slow, wherever they live."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SUBPROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _factory(start: Callable[..., T]) -> Iterator[Callable[..., T]]:
    """A factory fixture's body: ``start`` what each call asks for, and stop all of it at teardown."""
    with ExitStack() as started:
        yield lambda *args, **kwargs: started.enter_context(start(*args, **kwargs))


@pytest.fixture
def make_ingestor() -> Iterator[MakeIngestor]:
    """``make_ingestor(**settings)``: a real ingestor server on a free loopback port, in this process."""
    yield from _factory(ThreadedIngestor)


@pytest.fixture
def make_ingestor_process() -> Iterator[MakeProcess]:
    """``make_ingestor_process(**settings)``: ``python -m ingestor`` on a free loopback port (or ``port=``);
    takes what ``devtools.processes.start_ingestor_process`` takes."""
    yield from _factory(start_ingestor_process)


@pytest.fixture
def make_api_process() -> Iterator[MakeProcess]:
    """``make_api_process(ingestor_address, **env)``: ``python -m functions`` on a free loopback port."""
    yield from _factory(start_api_process)


@pytest.fixture
def make_uvicorn_process() -> Iterator[MakeProcess]:
    """``make_uvicorn_process(app, **env)``: plain ``uvicorn APP`` on a free loopback port."""
    yield from _factory(start_uvicorn_process)


@pytest.fixture(scope="module")
def make_module_ingestor() -> Iterator[MakeIngestor]:
    """``make_ingestor`` for a module-scoped fixture: its ingestors are closed after the module's last test."""
    yield from _factory(ThreadedIngestor)


@pytest.fixture(scope="module")
def make_module_ingestor_process() -> Iterator[MakeProcess]:
    """``make_ingestor_process`` for a module-scoped fixture."""
    yield from _factory(start_ingestor_process)


@pytest.fixture(scope="module")
def make_module_api_process() -> Iterator[MakeProcess]:
    """``make_api_process`` for a module-scoped fixture."""
    yield from _factory(start_api_process)


@pytest.fixture
def make_lambda_process() -> Iterator[Callable[..., LambdaProcess]]:
    """``make_lambda_process(**env)``: the Mangum handler in a process that stays between invocations."""
    yield from _factory(lambda **env: LambdaProcess(env))


@pytest.fixture
def make_stack(make_ingestor_process: MakeProcess, make_api_process: MakeProcess) -> MakeStack:
    """``make_stack(api_env={...}, **settings)``: ``python -m ingestor`` with those settings, and
    ``python -m functions`` pointed at it with that environment; the API is stopped first."""

    def make(api_env: Mapping[str, str] | None = None, **settings: Any) -> tuple[ServerProcess, ServerProcess]:
        ingestor = make_ingestor_process(**settings)
        return ingestor, make_api_process(ingestor.address, **(api_env or {}))

    return make


@pytest.fixture
def ingestor(make_ingestor: MakeIngestor) -> ThreadedIngestor:
    """A real ingestor server on a free loopback port, in this process (rate 1 Hz, capacity 1000)."""
    return make_ingestor(capacity=1000)


@pytest.fixture
def channel(ingestor: ThreadedIngestor) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(ingestor.address) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.IngestorServiceStub:
    return pb_grpc.IngestorServiceStub(channel)


@pytest.fixture
def ingestor_process(make_ingestor_process: MakeProcess) -> ServerProcess:
    """``python -m ingestor`` as a subprocess on a free port."""
    return make_ingestor_process(capacity=100_000, rate_hz=50)


@pytest.fixture
def api_process(ingestor_process: ServerProcess, make_api_process: MakeProcess) -> ServerProcess:
    """``python -m functions`` (uvicorn serving functions.app:app) on a free port, pointed at ingestor_process;
    stopped before it."""
    return make_api_process(ingestor_process.address)


def _close_the_current_loop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+ warns when none is current
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:  # none is current
            return
    if not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def no_event_loop_left_behind() -> Iterator[None]:
    """Mangum makes the main thread an event loop whenever it finds none current (importing
    functions.app builds its handler, test_links builds more), as a Lambda process needs one, and
    never closes it: close whatever loop is current before and after each test, so that none is
    dropped unclosed (its sockets would be reported as a ResourceWarning)."""
    _close_the_current_loop()
    yield
    _close_the_current_loop()


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
