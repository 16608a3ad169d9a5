"""Real servers for tests: the ingestor and uvicorn as subprocesses, or the ingestor in a thread.

Everything listens on 127.0.0.1 on a port the operating system picks; the chosen port is read
back from the server's own log line, so there is no race for a "free" port.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ingestor.server import RunningServer, start_server
from ingestor.settings import IngestorSettings

ROOT = Path(__file__).resolve().parent.parent
_INGESTOR_LISTENING = re.compile(r"listening on [^\s:]+:(\d+)")
_UVICORN_LISTENING = re.compile(r"Uvicorn running on http://[^\s:]+:(\d+)")


@dataclass
class ServerProcess:
    """A subprocess that logs the port it listens on; its output is kept for assertions."""

    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def _start(command: list[str], pattern: re.Pattern[str], env: Mapping[str, str], timeout: float) -> ServerProcess:
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            raise TimeoutError(f"{command} did not start in {timeout} s:\n{''.join(output)}") from None
        if line is None:
            raise RuntimeError(f"{command} exited with {process.wait()}:\n{''.join(output)}")
        match = pattern.search(line)
        if match:
            return ServerProcess(process, int(match.group(1)), output)


def start_ingestor_process(
    port: int = 0, timeout: float = 20, prefix: Sequence[str] = (), **settings: object
) -> ServerProcess:
    """``python -m ingestor`` on 127.0.0.1; ``settings`` become INGESTOR_* variables.

    ``prefix`` runs it under another command, e.g. strace.
    """
    env = {f"INGESTOR_{key.upper()}": str(value) for key, value in settings.items()}
    env.update(INGESTOR_HOST="127.0.0.1", INGESTOR_PORT=str(port))
    return _start([*prefix, sys.executable, "-m", "ingestor"], _INGESTOR_LISTENING, env, timeout)


def start_api_process(
    ingestor_address: str, timeout: float = 20, args: Sequence[str] = (), **env: str
) -> ServerProcess:
    """``python -m functions`` (uvicorn serving functions.app:app) on 127.0.0.1, pointed at an ingestor;
    ``args`` are more of its options (``--root-path``)."""
    command = [sys.executable, "-m", "functions", "--host", "127.0.0.1", "--port", "0", *args]
    return _start(command, _UVICORN_LISTENING, {"INGESTOR_ADDRESS": ingestor_address, **env}, timeout)


def start_uvicorn_process(app: str, timeout: float = 20, args: Sequence[str] = (), **env: str) -> ServerProcess:
    """``uvicorn APP`` on 127.0.0.1 on a free port (the benchmark's baseline, the README's command);
    ``args`` are more of uvicorn's options."""
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0", *args]
    return _start(command, _UVICORN_LISTENING, env, timeout)


class ThreadedIngestor:
    """The real ingestor server on its own event loop in a background thread.

    Tests call it with ordinary synchronous gRPC stubs, and can reach its store directly.
    """

    def __init__(self, **settings: object) -> None:
        self.settings = IngestorSettings(host="127.0.0.1", port=0, **settings)  # type: ignore[arg-type]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.running: RunningServer = self.call(start_server(self.settings))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def call(self, coroutine: object) -> object:
        """Run a coroutine on the server's loop and return its result."""
        future: Future[object] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)  # type: ignore[arg-type]
        return future.result(timeout=30)

    def close(self) -> None:
        self.call(self.running.shutdown(0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
