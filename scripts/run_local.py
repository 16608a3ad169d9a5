"""Start the ingestor and the API together for local use; Ctrl-C stops both.

Used by `make run` (``python -m scripts.run_local``). Settings come from the environment as usual
(INGESTOR_*, API_HOST, API_PORT); a port of 0 lets the system pick one, and the line this prints
once both listen says which. The ingestor's metrics are on INGESTOR_METRICS_PORT (9464 unless set).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from devtools.processes import LOCALHOST, ServerProcess, start_api_process, start_ingestor_process

STARTUP_TIMEOUT_S = 120
"""Generous: a durable ingestor reads its whole journal back before it listens."""
STOP_TIMEOUT_S = 10


def stop_all(children: list[ServerProcess]) -> int:
    """SIGTERM to whatever still runs; the first exit code that is not a clean stop, else 0."""
    codes = []
    for child in reversed(children):
        try:
            codes.append(child.stop(signal.SIGTERM, timeout=STOP_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            codes.append(-signal.SIGKILL)
    failed = [code for code in codes if code not in (0, -signal.SIGTERM)]
    return failed[0] if failed else 0


def main() -> int:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Explicitly: a shell may start us with SIGINT ignored (a background job), and Ctrl-C must work.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    children: list[ServerProcess] = []
    try:
        ingestor = start_ingestor_process(
            port=int(os.environ.get("INGESTOR_PORT", "50051")),
            host=os.environ.get("INGESTOR_HOST", LOCALHOST),
            timeout=STARTUP_TIMEOUT_S,
            lines="echo",
            metrics_port=os.environ.get("INGESTOR_METRICS_PORT", "9464"),
        )
        children.append(ingestor)
        address = os.environ.get("INGESTOR_ADDRESS", ingestor.address)
        api = start_api_process(
            address,
            port=int(os.environ.get("API_PORT", "8000")),
            host=os.environ.get("API_HOST", LOCALHOST),
            timeout=STARTUP_TIMEOUT_S,
            lines="echo",
        )
        children.append(api)
        print(f"API on http://{api.address}/api/v1  (docs: /docs) -- ingestor on {address}", flush=True)
        while all(child.process.poll() is None for child in children):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as error:
        print(f"cannot start: {str(error).splitlines()[0]}", file=sys.stderr)
        stop_all(children)
        return 1
    return stop_all(children)


if __name__ == "__main__":
    sys.exit(main())
