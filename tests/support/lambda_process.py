"""The Lambda handler in a process of its own: ``functions.app.handler`` as a cold start builds it.

The app reads its configuration (API_TOKEN, MAX_BODY_BYTES, ...) when ``functions.app`` is
imported, as on Lambda, so a configuration of its own needs a process of its own. ``invoke_cold``
runs a list of events in a new process; ``LambdaProcess`` keeps one between invocations, as a warm
instance, which can be frozen and thawed as Lambda does between them.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from devtools.processes import ROOT

_INVOKE = """
import asyncio, json, sys
asyncio.set_event_loop(asyncio.new_event_loop())  # as in a new Lambda process
from functions.app import handler
from tests.support.events import LambdaContext
events = json.loads(open(sys.argv[1]).read())
answers = [handler(event, LambdaContext()) for event in events]
open(sys.argv[2], "w").write(json.dumps(answers))
"""


def invoke_cold(events: Sequence[dict[str, Any]], env: Mapping[str, str], timeout: float = 60) -> list[dict[str, Any]]:
    """The handler's answer to each event, in order, invoked one after the other in a new process."""
    return invoke_cold_with_output(events, env, timeout)[0]


def invoke_cold_with_output(
    events: Sequence[dict[str, Any]], env: Mapping[str, str], timeout: float = 60
) -> tuple[list[dict[str, Any]], str]:
    """:func:`invoke_cold`'s answers, and what the process wrote to stdout (its logs, its metrics)."""
    with tempfile.TemporaryDirectory() as scratch:
        given, answered = Path(scratch, "events.json"), Path(scratch, "answers.json")
        given.write_text(json.dumps(list(events)))
        finished = subprocess.run(
            [sys.executable, "-c", _INVOKE, str(given), str(answered)],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert finished.returncode == 0, finished.stdout + finished.stderr
        return json.loads(answered.read_text()), finished.stdout


_WARM = """
import asyncio, json, sys
asyncio.set_event_loop(asyncio.new_event_loop())  # as in a new Lambda process
from functions.app import handler
from tests.support.events import LambdaContext
print("READY", flush=True)
for line in sys.stdin:
    print("ANSWER " + json.dumps(handler(json.loads(line), LambdaContext())), flush=True)
"""


class LambdaProcess:
    """The handler in a process that waits for the next event between invocations (on its standard
    input, as the runtime waits for the next invocation), keeping its module state: a warm instance."""

    def __init__(self, env: Mapping[str, str], timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WARM],
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._next(timeout)

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.output.append(line)
                if line.startswith(("READY", "ANSWER ")):
                    self._answers.put(line.removeprefix("ANSWER "))
        self._answers.put(None)

    def _next(self, timeout: float) -> str:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer within {timeout} s:\n{''.join(self.output)}") from None
        if line is None:
            raise RuntimeError(f"the handler's process exited with {self.process.wait()}:\n{''.join(self.output)}")
        return line

    def invoke(self, event: Mapping[str, Any], timeout: float = 30) -> dict[str, Any]:
        """The handler's answer to one event."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._next(timeout))
        return answer

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()  # a frozen process would never read the end of its input
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def response_headers(answer: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every header of a handler's answer (payload 1.0 or 2.0), by lower-case name."""
    headers: dict[str, list[str]] = {}
    for name, value in (answer.get("headers") or {}).items():
        headers.setdefault(name.lower(), []).append(value)
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), []).extend(values)
    return headers
