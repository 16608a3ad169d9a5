"""A function frozen between requests (as Lambda freezes an instance) and thawed onto a connection
that is gone: the ingestor restarted meanwhile, or the network dropped the connection silently.
The first request after the thaw succeeds within the connect timeout: no 503, no deadline waited out."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from devtools.processes import ServerProcess
from tests.support.events import http_v2_event
from tests.support.factories import MakeProcess
from tests.support.lambda_process import LambdaProcess
from tests.support.proxies import SilentDropProxy

KEEPALIVE_S = 1.0
CONNECT_TIMEOUT_S = 1.0
FROZEN_S = KEEPALIVE_S + 0.5
"""Frozen for longer than the keepalive interval, as a Lambda instance is between invocations."""
# Deadlines far beyond the connect timeout: a request that waited one out would show.
FUNCTION_ENV = {
    "INGESTOR_KEEPALIVE_S": str(KEEPALIVE_S),
    "INGESTOR_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
    "INGESTOR_TIMEOUT_S": "30",
}
PUSH = [{"timestamp": "2024-01-20T10:00:00Z", "value": 1.5, "category": "A"}]

Request = Callable[[str, str, object], tuple[int, object]]
"""(method, path under /api/v1, JSON body) -> (status, JSON answer)."""


class Function:
    """The function as uvicorn serves it or as the Lambda handler runs in a warm process: requests,
    and freezing and thawing the process."""

    def __init__(self, request: Request, pid: int) -> None:
        self.request = request
        self._pid = pid

    @contextmanager
    def frozen(self) -> Iterator[None]:
        os.kill(self._pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self._pid, signal.SIGCONT)


def uvicorn_function(make_api_process: MakeProcess, address: str) -> Function:
    api = make_api_process(address, **FUNCTION_ENV)
    # The HTTP client is never frozen: each request on a connection of its own, with a timeout
    # that lets a deadline show rather than hiding it.
    base = f"http://{api.address}/api/v1"

    def request(method: str, path: str, body: object) -> tuple[int, object]:
        answer = httpx.request(method, f"{base}{path}", json=body, timeout=40)
        return answer.status_code, answer.json()

    return Function(request, api.process.pid)


def lambda_function(make_lambda_process: Callable[..., LambdaProcess], address: str) -> Function:
    handler = make_lambda_process(INGESTOR_ADDRESS=address, **FUNCTION_ENV)

    def request(method: str, path: str, body: object) -> tuple[int, object]:
        event = http_v2_event(method, f"/api/v1{path}", body=None if body is None else json.dumps(body))
        answer = handler.invoke(event, timeout=40)
        return answer["statusCode"], json.loads(answer["body"])

    return Function(request, handler.process.pid)


@pytest.fixture(params=["uvicorn", "lambda"])
def make_function(
    request: pytest.FixtureRequest,
    make_api_process: MakeProcess,
    make_lambda_process: Callable[..., LambdaProcess],
) -> Callable[[str], Function]:
    if request.param == "uvicorn":
        return lambda address: uvicorn_function(make_api_process, address)
    return lambda address: lambda_function(make_lambda_process, address)


def timed(function: Function, method: str, path: str, body: object = None) -> tuple[int, object, float]:
    started = time.monotonic()
    status, answer = function.request(method, path, body)
    return status, answer, time.monotonic() - started


def assert_a_write_then_a_read_get_through(function: Function) -> None:
    """A write first: writes are never retried, so only a live connection gets it through; then the
    status counts that one reading. Each well within the connect timeout."""
    status, answer, elapsed = timed(function, "POST", "/readings", PUSH)
    assert (status, answer) == (202, {"accepted": 1})
    assert elapsed < CONNECT_TIMEOUT_S
    status, answer, elapsed = timed(function, "GET", "/status")
    assert status == 200
    assert answer["total_ingested"] == 1  # type: ignore[index]
    assert elapsed < CONNECT_TIMEOUT_S


def test_a_thawed_function_reaches_an_ingestor_restarted_while_it_was_frozen(
    make_function: Callable[[str], Function], make_ingestor_process: MakeProcess
) -> None:
    ingestor = make_ingestor_process(capacity=1000)
    function = make_function(ingestor.address)
    assert function.request("GET", "/status", None)[0] == 200  # connected

    with function.frozen():
        assert ingestor.stop() == 0
        restarted: ServerProcess = make_ingestor_process(port=ingestor.port, capacity=1000)
        time.sleep(FROZEN_S)

    assert_a_write_then_a_read_get_through(function)  # the new ingestor's: it counts one reading
    assert restarted.process.poll() is None


def test_a_thawed_function_replaces_a_connection_dropped_silently_while_it_was_frozen(
    make_function: Callable[[str], Function], make_ingestor_process: MakeProcess
) -> None:
    ingestor = make_ingestor_process(capacity=1000)
    with SilentDropProxy(ingestor.address) as proxy:
        function = make_function(proxy.address)
        assert function.request("GET", "/status", None)[0] == 200  # connected through the proxy
        connections = proxy.connections

        with function.frozen():
            proxy.drop()  # no FIN, no RST: what the function sends on it from now on vanishes
            time.sleep(FROZEN_S)

        assert_a_write_then_a_read_get_through(function)
        assert proxy.connections == connections + 1  # over a new connection


def test_a_function_in_use_keeps_its_connection(
    make_function: Callable[[str], Function], make_ingestor_process: MakeProcess
) -> None:
    """Calls closer together than the keepalive interval share one connection."""
    ingestor = make_ingestor_process(capacity=1000)
    with SilentDropProxy(ingestor.address) as proxy:
        function = make_function(proxy.address)
        for _ in range(5):
            assert function.request("GET", "/status", None)[0] == 200
            time.sleep(KEEPALIVE_S / 4)
        assert proxy.connections == 1
