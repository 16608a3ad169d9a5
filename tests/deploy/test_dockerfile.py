"""The Dockerfile, checked statically (no container engine here; hadolint runs in `make lint`).

Each image's files are laid out as its COPY instructions lay them out, and its entry point is
imported from that layout alone: a module missing from the image, or a dependency missing from
its lock, fails here rather than on first deploy.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.processes import ROOT
from tests.support.shipping import Dockerfile, Stage, read_dockerfile, read_lock

LOCKS = {"function": ROOT / "requirements/function.txt", "ingestor": ROOT / "requirements/ingestor.txt"}
BUILD_LOCK = ROOT / "requirements/build.txt"
"""What compiles the ingestor's kernel in the kernels stage (pyproject's build requirements)."""


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return read_dockerfile()


def test_two_targets_on_pinned_bases_of_one_python(dockerfile: Dockerfile) -> None:
    assert {"function", "ingestor"} <= set(dockerfile.stages)
    function_base = dockerfile.stages["function"].base
    ingestor_base = dockerfile.stages["ingestor"].base
    lambda_tag = re.fullmatch(r"public\.ecr\.aws/lambda/python:(3\.1[23])\.\d{4}\.\d{2}\.\d{2}\.\d{2}", function_base)
    slim_tag = re.fullmatch(r"python:(3\.1[23])\.\d+-slim-\w+", ingestor_base)
    assert lambda_tag, f"Lambda base not pinned to a dated tag: {function_base}"
    assert slim_tag, f"ingestor base not pinned to a patch release: {ingestor_base}"
    # The shared stage compiles bytecode for both images: same Python minor version everywhere.
    assert lambda_tag.group(1) == slim_tag.group(1)
    # The kernel is compiled on the ingestor's very Python, with a compiler: its full image.
    kernels_base = dockerfile.stages["kernels"].base
    assert kernels_base == ingestor_base.replace("-slim-", "-")
    assert {stage.base for stage in dockerfile.stages.values()} == {function_base, ingestor_base, kernels_base}


def test_function_target_names_an_importable_handler(dockerfile: Dockerfile) -> None:
    function = dockerfile.stages["function"]
    (handler_path,) = function.last("CMD").exec_form
    module_name, _, attribute = handler_path.rpartition(".")
    assert handler_path == "functions.app.handler"
    module = __import__(module_name, fromlist=[attribute])
    assert callable(getattr(module, attribute))


def test_ingestor_target_runs_unprivileged_on_every_container_address(dockerfile: Dockerfile) -> None:
    ingestor = dockerfile.stages["ingestor"]
    assert re.fullmatch(r"[1-9]\d{3,}(:[1-9]\d{3,})?", ingestor.last("USER").arguments), "numeric, non-root"
    environment = dict(re.findall(r"(\w+)=(\S+)", " ".join(item.arguments for item in ingestor.all("ENV"))))
    assert environment["INGESTOR_HOST"] == "0.0.0.0"
    assert environment["INGESTOR_PORT"] == ingestor.last("EXPOSE").arguments == "50051"
    assert ingestor.last("CMD").exec_form == ["python", "-m", "ingestor"]
    healthcheck = ingestor.last("HEALTHCHECK")
    assert healthcheck.exec_form[:3] == ["python", "-m", "ingestor.healthcheck"]
    # The code's own default stays loopback: only the image opens it up.
    from ingestor.settings import IngestorSettings

    assert IngestorSettings.model_fields["host"].default == "127.0.0.1"


def test_ingestor_target_has_a_data_volume_its_user_owns(dockerfile: Dockerfile) -> None:
    ingestor = dockerfile.stages["ingestor"]
    (volume,) = ingestor.all("VOLUME")
    assert volume.exec_form == ["/var/lib/ingestor"]
    # Made as root before USER, owned by the user the ingestor runs as, and before the VOLUME line
    # (what a build step changes under a declared volume afterwards is thrown away).
    position = {id(item): index for index, item in enumerate(ingestor.instructions)}
    user = ingestor.last("USER")
    uid, _, gid = user.arguments.partition(":")
    (made,) = [run for run in ingestor.all("RUN") if "/var/lib/ingestor" in run.arguments]
    words = made.arguments.split()
    assert words[:2] == ["install", "-d"]
    options = dict(zip(words[2:-1:2], words[3:-1:2], strict=True))
    assert (options["-o"], options["-g"], options["-m"]) == (uid, gid or uid, "0700")
    assert words[-1] == "/var/lib/ingestor"
    assert position[id(made)] < position[id(volume)]
    assert position[id(made)] < position[id(user)]
    # Memory only unless the deployment points INGESTOR_DATA_DIR at it.
    environment = " ".join(item.arguments for item in ingestor.all("ENV"))
    assert "INGESTOR_DATA_DIR" not in environment


@pytest.mark.parametrize("target", ["function", "ingestor"])
def test_each_target_installs_exactly_its_lock_with_hashes(dockerfile: Dockerfile, target: str) -> None:
    installed: list[str] = []
    for stage in dockerfile.chain(target):
        for copy in stage.all("COPY"):
            flags, operands = copy.flags_and_operands()
            installed += [
                source for source in operands[:-1] if "from" not in flags and source.startswith("requirements")
            ]
        for run in stage.all("RUN"):
            if "pip install" in run.arguments:
                assert "--require-hashes" in run.arguments
                assert "--no-cache-dir" in run.arguments
    expected = [LOCKS[target], BUILD_LOCK] if target == "ingestor" else [LOCKS[target]]
    assert sorted(ROOT / path for path in installed) == sorted(expected)


def _image_layout(dockerfile: Dockerfile, target: str, destination: Path) -> None:
    """Lay out the code ``target`` gets, following the COPY instructions from the shared source stage."""
    source_stage = dockerfile.stages["source"]
    workdir = Path(source_stage.last("WORKDIR").arguments)
    staged = destination / "staged"
    for copy in source_stage.all("COPY"):
        _, operands = copy.flags_and_operands()
        *sources, target_path = operands
        for source in sources:
            origin = ROOT / source
            placed = staged / target_path
            if origin.is_dir():
                # What .dockerignore keeps out of the context: bytecode, and what `make install` compiled here.
                ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c")
                shutil.copytree(origin, placed, dirs_exist_ok=True, ignore=ignore)
            else:
                placed.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, placed)
    final: Stage = dockerfile.stages[target]
    copies = [copy.flags_and_operands() for copy in final.all("COPY") if "from" in copy.flags_and_operands()[0]]
    code_copies = [operands for flags, operands in copies if flags["from"] == "source"]
    assert len(code_copies) == 1, f"{target}: one COPY of its code from the source stage"
    (image_path, image_root) = code_copies[0]
    shutil.copytree(staged / Path(image_path).relative_to(workdir), destination / "image")
    for flags, operands in copies:
        if flags["from"] == "kernels":
            # The kernels stage compiles ingestor/*.pyx as `make install` did here: their modules,
            # built for this interpreter, go where the COPY puts the image's.
            *built, placed = operands
            for pattern in built:
                modules = sorted(ROOT.glob(Path(pattern).relative_to("/build").as_posix()))
                kernels = sorted(path.stem for path in (ROOT / "ingestor").glob("*.pyx"))
                assert [module.name.split(".")[0] for module in modules] == kernels
                for module in modules:
                    shutil.copy2(module, destination / "image" / Path(placed).relative_to(image_root))


# Imports the entry points with only the lock's distributions importable (this environment has
# more: the dev tools, the other image's packages), and reports where each module came from.
# The path finder is made blind to the others, as if they were not installed: importing one fails,
# and asking whether one is there (importlib.util.find_spec, as libraries with optional
# dependencies do) answers no.
_PROBE = """
import importlib, importlib.abc, importlib.machinery, importlib.metadata, json, os, re, sys
allowed = set(json.loads(os.environ["PROBE_LOCKED"]))
normalize = lambda name: re.sub(r"[-_.]+", "-", name).lower()
blocked = {
    top for top, dists in importlib.metadata.packages_distributions().items()
    if not any(normalize(dist) in allowed for dist in dists)
} - {"functions", "ingestor"}

class OnlyTheLock(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)

    def invalidate_caches(self):
        importlib.machinery.PathFinder.invalidate_caches()

sys.meta_path[sys.meta_path.index(importlib.machinery.PathFinder)] = OnlyTheLock()
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({name: getattr(module, "__file__", None) for name, module in sys.modules.items()}))
"""

ENTRY_POINTS = {
    "function": ["functions.app"],
    "ingestor": ["ingestor.__main__", "ingestor.server", "ingestor.healthcheck"],
}


@pytest.mark.slow  # a fresh interpreter per image
@pytest.mark.parametrize("target", ["function", "ingestor"])
def test_entry_points_import_from_the_image_layout_and_its_lock_alone(
    dockerfile: Dockerfile, target: str, tmp_path: Path
) -> None:
    _image_layout(dockerfile, target, tmp_path)
    image = tmp_path / "image"
    lock = read_lock(LOCKS[target])
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *ENTRY_POINTS[target]],
        cwd=image,
        env={**os.environ, "PYTHONPATH": str(image), "PROBE_LOCKED": json.dumps(sorted(lock.versions))},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{target} does not import from its image and lock alone:\n{result.stderr}"
    modules: dict[str, str | None] = json.loads(result.stdout)
    first_party = {name: path for name, path in modules.items() if name.split(".")[0] in {"functions", "ingestor"}}
    outside = {name: path for name, path in first_party.items() if path and not path.startswith(str(image))}
    assert not outside, f"{target} imports code its image does not contain: {outside}"

    if target == "function":
        # The generated contract only: none of the ingestor's own modules, none of its packages.
        ingestor_modules = {name for name in first_party if name.startswith("ingestor")}
        assert ingestor_modules <= {"ingestor", "ingestor.v1"} | {
            name for name in ingestor_modules if name.startswith("ingestor.v1.")
        }
        files = {path.relative_to(image).as_posix() for path in (image / "ingestor").rglob("*.py")}
        assert files == {"ingestor/__init__.py"} | {f for f in files if f.startswith("ingestor/v1/")}


def test_dockerignore_lets_in_what_the_dockerfile_copies_and_little_else(dockerfile: Dockerfile) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in patterns if line and not line.startswith("#")]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            body = pattern.lstrip("!").rstrip("/")
            parts = path.split("/")
            # A pattern names paths from the context's root; only **/ lets it match at any depth.
            candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            if body.startswith("**/"):
                body = body.removeprefix("**/")
                candidates += parts
            if any(fnmatch.fnmatch(candidate, body) for candidate in candidates):
                verdict = not negated
        return verdict

    copied = [
        source
        for stage in dockerfile.stages.values()
        for copy in stage.all("COPY")
        if "from" not in copy.flags_and_operands()[0]
        for source in copy.flags_and_operands()[1][:-1]
    ]
    assert copied
    for source in copied:
        assert not ignored(source.rstrip("/")), f".dockerignore hides {source}"
    for kept_out in [
        "tests/ingestor/test_store.py",
        "devtools/processes.py",
        ".venv",
        ".git",
        "README.md",
        "docs/deploy.md",
        "template.yaml",
        "ingestor/__pycache__",
        "ingestor/bucket_partials.cpython-311-x86_64-linux-gnu.so",
        "ingestor/bucket_partials.c",
    ]:
        assert ignored(kept_out), f".dockerignore lets {kept_out} into the build context"
