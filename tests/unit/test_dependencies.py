"""The install is the lock: every requirement of requirements.lock pinned with a hash, every
dependency of pyproject.toml (base, servers, dev) in it at a version its floor allows, aiohttp past
its known advisories, and `make deps` installing it in hash-checking mode (README, "Dependencies
and why").
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ADVISORY_FLOOR = {"aiohttp": Version("3.12.14")}  # CVE-2025-53643; pyproject's own floor may be higher


def lock_entries() -> list[str]:
    """One string per requirement of the lock: backslash continuations joined, comment lines dropped."""
    lines = re.sub(r"\\\n", " ", LOCK.read_text()).splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def locked() -> dict[str, tuple[Version, list[str]]]:
    pins: dict[str, tuple[Version, list[str]]] = {}
    for entry in lock_entries():
        requirement, *options = entry.split(" --")
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", requirement.strip())
        assert match, f"not an exact pin: {entry[:80]!r}"
        hashes = [o.strip().removeprefix("hash=") for o in options if o.strip().startswith("hash=")]
        pins[canonicalize_name(match[1])] = (Version(match[2]), hashes)
    return pins


def declared() -> list[Requirement]:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in [*project["dependencies"], *extras["servers"], *extras["dev"]]]


def test_every_requirement_of_the_lock_is_pinned_with_a_sha256_hash() -> None:
    pins = locked()
    assert len(pins) > 50
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no --hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), name


def test_the_lock_pins_aiohttp_past_its_advisories() -> None:
    pins = locked()
    for name, floor in ADVISORY_FLOOR.items():
        assert pins[name][0] >= floor


def test_pyproject_floors_are_past_the_advisories_too() -> None:
    """For installs without the lock: the floor itself is past the advisory."""
    for requirement in declared():
        floor = ADVISORY_FLOOR.get(canonicalize_name(requirement.name))
        if floor is not None:
            lower = [Version(s.version) for s in requirement.specifier if s.operator in (">=", ">", "~=")]
            assert lower, requirement
            assert max(lower) >= floor, requirement


@pytest.mark.parametrize("requirement", declared(), ids=str)
def test_every_declared_dependency_is_locked_at_a_version_it_allows(requirement: Requirement) -> None:
    pins = locked()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
    assert requirement.specifier.contains(pins[name][0], prereleases=True), (requirement, pins[name][0])


def test_make_deps_installs_the_lock_with_hashes_then_the_project_without_deps() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements\.lock$", makefile, re.M)
    recipe = makefile.split("$(STAMP): pyproject.toml $(LOCK)\n", 1)[1].split("\n\n", 1)[0]
    assert "pip install --quiet --require-hashes -r $(LOCK)" in recipe
    assert "pip install --quiet --no-deps -e ." in recipe
    assert "[servers,dev]" not in recipe  # nothing resolved outside the lock


def test_make_lint_runs_the_vulnerability_audit_of_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile.split("\nlint: ", 1)[1].split("\n\n", 1)[0]
    assert "audit" in lint
    audit = makefile.split("\naudit: ", 1)[1].split("\n\n", 1)[0]
    assert "pip-audit --requirement $(LOCK) --require-hashes" in audit
    assert "vulnerability audit skipped: cannot reach" in makefile
