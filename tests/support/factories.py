"""The types of the factory fixtures in tests/conftest.py, for the tests' signatures."""

from __future__ import annotations

from collections.abc import Callable

from devtools.processes import ServerProcess, ThreadedIngestor

MakeIngestor = Callable[..., ThreadedIngestor]
"""``make_ingestor(**settings)``: a ThreadedIngestor, closed when the test ends."""
MakeProcess = Callable[..., ServerProcess]
"""``make_ingestor_process(**settings)``, ``make_api_process(address, **env)``, ``make_uvicorn_process(app, **env)``:
a ServerProcess, stopped when the test ends."""
MakeStack = Callable[..., tuple[ServerProcess, ServerProcess]]
"""``make_stack(api_env={...}, **settings)``: (ingestor process, API process in front of it), both stopped
when the test ends."""
