"""Readers for the shipping artifacts (Dockerfile, lock files, template.yaml), for static checks.

There is no container engine where the tests run: these read what the engine, pip and
CloudFormation would read, closely enough to check what each artifact promises.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.processes import ROOT


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- Dockerfile -------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    arguments: str

    @property
    def exec_form(self) -> list[str]:
        """The JSON array of CMD/ENTRYPOINT/HEALTHCHECK CMD in exec form."""
        return json.loads(self.arguments[self.arguments.index("[") :])

    def flags_and_operands(self) -> tuple[dict[str, str], list[str]]:
        """``COPY --from=x a b`` -> ({"from": "x"}, ["a", "b"])."""
        flags: dict[str, str] = {}
        operands: list[str] = []
        for word in shlex.split(self.arguments):
            if word.startswith("--") and not operands:
                key, _, value = word[2:].partition("=")
                flags[key] = value
            else:
                operands.append(word)
        return flags, operands


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [item for item in self.instructions if item.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        return self.all(keyword)[-1]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: dict[str, Stage]

    def chain(self, target: str) -> list[Stage]:
        """Every stage ``target`` is built from (its bases and COPY --from sources), target last."""
        seen: list[Stage] = []

        def visit(name: str) -> None:
            stage = self.stages[name]
            if stage in seen:
                return
            if stage.base in self.stages:
                visit(stage.base)
            for copy in stage.all("COPY"):
                source = copy.flags_and_operands()[0].get("from")
                if source:
                    visit(source)
            seen.append(stage)

        visit(target)
        return seen


def read_dockerfile(path: Path = ROOT / "Dockerfile") -> Dockerfile:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and current is None:
            name, _, default = arguments.strip().partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            current = stages[name] = Stage(name, base)
        elif current is not None:
            current.instructions.append(Instruction(keyword, arguments.strip()))
    return Dockerfile(args, stages)


# --- Locks and pyproject ---------------------------------------------------------------------------


@dataclass
class Lock:
    versions: dict[str, str]
    """Normalized name -> pinned version."""
    unhashed: list[str]
    """Pins without a --hash (pip --require-hashes refuses the whole file then)."""


def read_lock(path: Path) -> Lock:
    versions: dict[str, str] = {}
    unhashed: list[str] = []
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)(.*)", line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        name, version, rest = match.groups()
        versions[normalize(name)] = version
        if "--hash=sha256:" not in rest:
            unhashed.append(name)
    return Lock(versions, unhashed)


def pyproject_pins(*extras: str) -> dict[str, str]:
    """The project's exact pins: the shared dependencies plus those of ``extras``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        assert version, f"pyproject.toml pins exact versions: {requirement!r}"
        pins[normalize(name.split("[")[0])] = version
    return pins


# --- template.yaml ---------------------------------------------------------------------------------


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms: ``!Ref X`` -> {"Ref": "X"}, ``!Sub s`` -> {"Fn::Sub": s}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def read_template(path: Path = ROOT / "template.yaml") -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CloudFormationLoader)  # a SafeLoader subclass
