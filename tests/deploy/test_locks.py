"""The images' locks (requirements/*.txt, `make locks`) agree with pyproject.toml.

Transitive versions are whatever `make locks` resolved; direct ones must be pyproject's exact pins.
"""

from __future__ import annotations

import tomllib

import pytest

from devtools.processes import ROOT
from tests.support.shipping import normalize, pyproject_pins, read_lock

NEVER_IN_AN_IMAGE = {
    "moto",
    "grpcio-tools",
    "pytest",
    "pytest-timeout",
    "httpx",
    "ruff",
    "mypy",
    "pandas-stubs",
    "types-grpcio",
    "types-protobuf",
    "uvicorn",
    "cfn-lint",
    "uv",
}
ONLY_IN = {
    "function": {"fastapi", "mangum", "pandas", "orjson", "starlette"},
    "ingestor": {"grpcio-health-checking", "grpcio-reflection", "boto3", "botocore", "s3transfer"},
}
IN_BOTH = {"pyarrow"}
"""The function's exports and the ingestor's archive both write Parquet."""


@pytest.mark.parametrize("image", ["function", "ingestor"])
def test_the_lock_pins_what_pyproject_pins(image: str) -> None:
    lock = read_lock(ROOT / "requirements" / f"{image}.txt")
    pins = pyproject_pins(image)
    assert {name: lock.versions.get(name) for name in pins} == pins
    assert lock.unhashed == []


@pytest.mark.parametrize("image", ["function", "ingestor"])
def test_the_lock_holds_nothing_the_image_must_not_carry(image: str) -> None:
    lock = read_lock(ROOT / "requirements" / f"{image}.txt")
    other = "ingestor" if image == "function" else "function"
    assert not set(lock.versions) & (NEVER_IN_AN_IMAGE | ONLY_IN[other])
    assert ONLY_IN[image] | IN_BOTH <= set(lock.versions)


def test_the_build_lock_pins_what_pyproject_builds_with() -> None:
    """requirements/build.txt, what the ingestor image compiles its kernel with, is exactly
    pyproject's [build-system] requires (what `pip install` here compiles it with)."""
    lock = read_lock(ROOT / "requirements" / "build.txt")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = {normalize(name): version for name, version in (requirement.split("==") for requirement in requires)}
    assert lock.versions == pins
    assert lock.unhashed == []
