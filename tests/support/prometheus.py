"""A real Prometheus server (Debian's ``prometheus``, which ``make test`` installs) on loopback.

It scrapes the targets it is given every second and answers PromQL over its HTTP API; its data
lives in a temporary directory and goes with it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from devtools.processes import LOCALHOST
from devtools.waiting import wait_until


@dataclass
class Prometheus:
    url: str

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The result of an instant query (a vector: each item's ``metric`` labels and ``value``)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{expression}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expression: str) -> float | None:
        """The single value of ``expression``, None when it has none (yet)."""
        result = self.query(expression)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def metric_names(self) -> set[str]:
        response = httpx.get(f"{self.url}/api/v1/label/__name__/values", timeout=10)
        return set(response.json()["data"])

    def targets_up(self) -> int:
        return sum(int(float(item["value"][1])) for item in self.query("up"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_prometheus(jobs: Mapping[str, str]) -> Iterator[Prometheus]:
    """Prometheus scraping each ``job: host:port`` (its /metrics) every second, until the block ends."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is not installed: make test installs it (make system-tools)"
    with tempfile.TemporaryDirectory() as scratch:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in jobs.items()
            ],
        }
        config_file = Path(scratch, "prometheus.yml")
        config_file.write_text(yaml.safe_dump(config))
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={Path(scratch, 'data')}",
                f"--web.listen-address={LOCALHOST}:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://{LOCALHOST}:{port}"

            def ready() -> bool:
                try:
                    return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
                except httpx.TransportError:
                    return process.poll() is not None  # it ended: the assertion below says so

            wait_until(ready, 30, "prometheus did not become ready")
            assert process.poll() is None, f"prometheus exited with {process.returncode}"
            yield Prometheus(url)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
