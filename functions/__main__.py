"""``python -m functions``: serve the API with uvicorn, exiting 0 after a graceful shutdown.

``uvicorn functions.app:app`` works too; this entry point differs in its exit status (uvicorn
re-raises SIGTERM/SIGINT after shutting down, which makes a clean stop look like a crash to
process supervisors) and in its shutdown: open event streams end at once, with a last event, and
requests still running SHUTDOWN_GRACE_S later are answered 503, so that the process ends in time.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from types import FrameType

import uvicorn

from functions import shutdown
from functions.settings import get_settings

# uvicorn's own lines (startup, errors) as JSON too; each request is logged by the app itself.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "functions.logs.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
    "loggers": {"uvicorn": {"handlers": ["stdout"], "level": "INFO", "propagate": False}},
}


UVICORN_GRACE_MARGIN_S = 0.5
"""uvicorn cancels what still runs this long after the app's own deadline has answered it."""


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


class _Server(uvicorn.Server):
    """uvicorn's server, which first tells the app that the shutdown begins (functions/shutdown.py):
    its event streams would otherwise hold the shutdown for as long as their clients stay."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        shutdown.begin()
        await super().shutdown(sockets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions", description="Serve the HTTP API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port, 0 for any free one (default 8000)")
    parser.add_argument(
        "--root-path", default="", help="the path prefix a proxy in front takes away, e.g. /prod (default none)"
    )
    args = parser.parse_args(argv)
    # uvicorn restores these after its graceful shutdown and re-raises the signal into them.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    settings = get_settings()
    config = uvicorn.Config(
        "functions.app:app",
        host=args.host,
        port=args.port,
        root_path=args.root_path,
        log_config=LOG_CONFIG,
        log_level=settings.log_level.lower(),
        access_log=False,
        # Event streams end at once; requests still running SHUTDOWN_GRACE_S after SIGTERM are
        # answered 503 by the app (functions/shutdown.py), and cancelled by uvicorn a little later.
        # (uvicorn annotates it int, and waits with it as a float timeout.)
        timeout_graceful_shutdown=settings.shutdown_grace_s + UVICORN_GRACE_MARGIN_S,  # type: ignore[arg-type]
    )
    server = _Server(config)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
