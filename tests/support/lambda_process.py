"""The Lambda handler in a process of its own: ``functions.app.handler`` as a cold start builds it.

The app reads its configuration (API_TOKEN, MAX_BODY_BYTES, ...) when ``functions.app`` is
imported, as on Lambda, so a configuration of its own needs a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def response_headers(answer: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every header of a handler's answer (payload 1.0 or 2.0), by lower-case name."""
    headers: dict[str, list[str]] = {}
    for name, value in (answer.get("headers") or {}).items():
        headers.setdefault(name.lower(), []).append(value)
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), []).extend(values)
    return headers
