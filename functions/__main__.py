"""``python -m functions``: serve the API with uvicorn, exiting 0 after a graceful shutdown.

``uvicorn functions.app:app`` works too; this entry point differs only in its exit status: uvicorn
re-raises SIGTERM/SIGINT after shutting down, which makes a clean stop look like a crash to
process supervisors.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

import uvicorn


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions", description="Serve the HTTP API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port, 0 for any free one (default 8000)")
    args = parser.parse_args(argv)
    # uvicorn restores these after its graceful shutdown and re-raises the signal into them.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    server = uvicorn.Server(uvicorn.Config("functions.app:app", host=args.host, port=args.port))
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
