"""Start the ingestor and the API together for local use; Ctrl-C stops both.

Used by `make run`. Settings come from the environment as usual (INGESTOR_*, API_PORT).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

API_HOST = os.environ.get("API_HOST", "127.0.0.1")
API_PORT = os.environ.get("API_PORT", "8000")


def main() -> int:
    env = dict(os.environ)
    ingestor_host = env.get("INGESTOR_HOST", "127.0.0.1")
    ingestor_port = env.get("INGESTOR_PORT", "50051")
    env.setdefault("INGESTOR_ADDRESS", f"{ingestor_host}:{ingestor_port}")
    children = [
        subprocess.Popen([sys.executable, "-m", "ingestor"], env=env),
        subprocess.Popen(
            [sys.executable, "-m", "functions", "--host", API_HOST, "--port", API_PORT],
            env=env,
        ),
    ]
    print(f"API on http://{API_HOST}:{API_PORT}/api/v1  (docs: /docs) -- ingestor on {env['INGESTOR_ADDRESS']}")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Explicitly: a shell may start us with SIGINT ignored (a background job), and Ctrl-C must work.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    failed = [child.returncode for child in children if child.returncode not in (0, -signal.SIGTERM)]
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main())
