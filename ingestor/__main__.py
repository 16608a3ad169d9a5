"""``python -m ingestor``: run the ingestor. Flags override the INGESTOR_* environment."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from pydantic import ValidationError

from ingestor.errors import JournalError, PortUnavailable
from ingestor.logs import configure_logging
from ingestor.server import serve
from ingestor.settings import IngestorSettings


def parse_args(argv: list[str]) -> dict[str, Any]:
    """The flags given, by setting name; pydantic validates them with the environment."""
    parser = argparse.ArgumentParser(prog="python -m ingestor", description=__doc__)
    parser.add_argument("--host", help="address to listen on (INGESTOR_HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port, 0 for any free one (INGESTOR_PORT, default 50051)")
    parser.add_argument("--capacity", help="readings kept in memory (INGESTOR_CAPACITY, default 1000000)")
    parser.add_argument("--rate-hz", help="readings generated per second (INGESTOR_RATE_HZ, default 1)")
    parser.add_argument("--categories", help="comma-separated categories (INGESTOR_CATEGORIES, default A,B,C)")
    parser.add_argument("--data-dir", help="durable mode: fsync every batch here (INGESTOR_DATA_DIR, default unset)")
    return {key: value for key, value in vars(parser.parse_args(argv)).items() if value is not None}


def main(argv: list[str] | None = None) -> int:
    try:
        settings = IngestorSettings(**parse_args(sys.argv[1:] if argv is None else argv))
    except ValidationError as error:
        print(f"invalid configuration:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except (JournalError, PortUnavailable) as error:
        print(f"cannot start: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
