"""Start the real servers: the ingestor and uvicorn as subprocesses, or the ingestor in a thread.

Everything listens on a port the operating system picks (port 0 unless told otherwise); the chosen
port is read back from the server's own log line, so there is no race for a "free" port. Every
server here is a context manager that stops it on exit.
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
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from ingestor.server import RunningServer, start_server
from ingestor.settings import IngestorSettings

ROOT = Path(__file__).resolve().parent.parent
LOCALHOST = "127.0.0.1"
_INGESTOR_LISTENING = re.compile(r"listening on [^\s:]+:(\d+)")
_UVICORN_LISTENING = re.compile(r"Uvicorn running on http://[^\s:]+:(\d+)")

Lines = Literal["keep", "echo", "drop"]
"""What becomes of a server's output: kept in ``ServerProcess.output`` (for assertions), printed to
this process's standard output (a local run), or dropped (a long load run)."""

T = TypeVar("T")


@dataclass
class ServerProcess:
    """A subprocess that logs the port it listens on; its output is kept for assertions."""

    process: subprocess.Popen[str]
    port: int
    output: list[str] = field(default_factory=list)
    host: str = LOCALHOST
    reader: threading.Thread | None = None
    """The thread that reads the output; it ends once the process has closed it."""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` (unless it has exited already) and return its exit code once every line it
        wrote is in ``output``; kill it after ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        if self.reader is not None:
            self.reader.join(timeout=timeout)  # a child it left behind may hold the pipe open: not forever
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_server_process(
    command: Sequence[str],
    listening: re.Pattern[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 20,
    lines: Lines = "keep",
    host: str = LOCALHOST,
    new_session: bool = False,
) -> ServerProcess:
    """Run ``command`` from the repository's root and return once a line of its output matches
    ``listening``, whose first group is the port; ``env`` is added to this process's environment.

    ``new_session`` puts it in a process group of its own, as a terminal does for a command.
    """
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )
    startup: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []
    started = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        with process.stdout:  # closed at the end of the output, not left to the garbage collector
            for line in process.stdout:
                if lines == "keep" or not started.is_set():
                    output.append(line)
                if lines == "echo":
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if not started.is_set():
                    startup.put(line)
        startup.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                line = startup.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{list(command)} did not start in {timeout} s:\n{''.join(output)}") from None
            if line is None:
                raise RuntimeError(f"{list(command)} exited with {process.wait()}:\n{''.join(output)}")
            match = listening.search(line)
            if match:
                started.set()
                if lines != "keep":
                    output.clear()
                return ServerProcess(process, int(match.group(1)), output, host, reader)
    except BaseException:
        # Interrupted or failed while starting: leave nothing running behind.
        if process.poll() is None:
            process.kill()
            process.wait()
        raise


def start_ingestor_process(
    port: int = 0,
    timeout: float = 20,
    prefix: Sequence[str] = (),
    host: str = LOCALHOST,
    lines: Lines = "keep",
    **settings: object,
) -> ServerProcess:
    """``python -m ingestor`` listening on ``host``; ``settings`` become INGESTOR_* variables.

    ``prefix`` runs it under another command, e.g. strace. Its metrics port is off unless
    ``metrics_port`` is given (0: a free one, logged as ``metrics on http://host:port/metrics``).
    """
    env = {f"INGESTOR_{key.upper()}": str(value) for key, value in {"metrics_port": "", **settings}.items()}
    env.update(INGESTOR_HOST=host, INGESTOR_PORT=str(port))
    return start_server_process(
        [*prefix, sys.executable, "-m", "ingestor"], _INGESTOR_LISTENING, env, timeout, lines, host
    )


def start_api_process(
    ingestor_address: str,
    timeout: float = 20,
    args: Sequence[str] = (),
    port: int = 0,
    host: str = LOCALHOST,
    lines: Lines = "keep",
    **env: str,
) -> ServerProcess:
    """``python -m functions`` (uvicorn serving functions.app:app) pointed at an ingestor;
    ``args`` are more of its options (``--root-path``)."""
    command = [sys.executable, "-m", "functions", "--host", host, "--port", str(port), *args]
    env = {"INGESTOR_ADDRESS": ingestor_address, **env}
    return start_server_process(command, _UVICORN_LISTENING, env, timeout, lines, host)


def start_uvicorn_process(app: str, timeout: float = 20, args: Sequence[str] = (), **env: str) -> ServerProcess:
    """``uvicorn APP`` on 127.0.0.1 on a free port (the benchmark's baseline, the README's command);
    ``args`` are more of uvicorn's options."""
    command = [sys.executable, "-m", "uvicorn", app, "--host", LOCALHOST, "--port", "0", *args]
    return start_server_process(command, _UVICORN_LISTENING, env, timeout)


class ThreadedIngestor:
    """The real ingestor server on its own event loop in a background thread.

    Callers use ordinary synchronous gRPC stubs, and can reach its store directly.
    """

    def __init__(self, **settings: Any) -> None:
        # No metrics port unless asked for (metrics_port=0: a free one).
        self.settings = IngestorSettings(host=LOCALHOST, port=0, **{"metrics_port": None, **settings})
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._closed = False
        try:
            self.running: RunningServer = self.call(start_server(self.settings))
        except BaseException:
            self._stop_loop()
            raise

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.running.port}"

    def stop_generator(self) -> None:
        """Stop generating readings, so that the store holds only what is written to it."""
        self.call(self.running.generator.stop())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        """Shut the server down and end its thread; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self.call(self.running.shutdown(0.5))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
