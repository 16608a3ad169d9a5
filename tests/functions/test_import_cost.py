"""Each process loads the metrics library of its own sink only, and none at import off Lambda."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devtools.processes import ROOT

pytestmark = pytest.mark.slow  # fresh interpreters

PROBE = (
    "import json, sys\nimport functions.app\n"
    "print(json.dumps({name: name in sys.modules for name in ('prometheus_client', 'aws_lambda_powertools')}))"
)


def loaded_at_import(**env: str) -> dict[str, bool]:
    environment = {key: value for key, value in os.environ.items() if key != "AWS_LAMBDA_FUNCTION_NAME"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env={**environment, **env}, capture_output=True, text=True, check=True
    )
    loaded: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_app_loads_no_metrics_library() -> None:
    assert loaded_at_import() == {"prometheus_client": False, "aws_lambda_powertools": False}


def test_a_lambda_instance_loads_powertools_in_its_init_phase_and_never_prometheus() -> None:
    assert loaded_at_import(AWS_LAMBDA_FUNCTION_NAME="pipeline-function") == {
        "prometheus_client": False,
        "aws_lambda_powertools": True,
    }
