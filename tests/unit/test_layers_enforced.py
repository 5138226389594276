"""`make lint` refuses an import that climbs the layers: shown on a copy of the tree with one bad import.

The contracts live in `.importlinter`; this test proves they bite (a contract that cannot fail
protects nothing): a use case that imports an entry point, and a domain module that imports an
I/O client, each make `lint-imports` fail and name the broken contract.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "migrations")
    for package in ("libs", "services"):
        shutil.copytree(ROOT / package, tree / package, ignore=ignore)
    shutil.copy(ROOT / ".importlinter", tree / ".importlinter")
    return tree


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / ".importlinter")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_hold_in_the_tree_as_it_is(tmp_path: Path) -> None:
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "bad_import", "broken_contract"),
    [
        (
            "services/orchestrator/usecases/catalog.py",
            "import services.orchestrator.entrypoints.routes",
            "orchestrator: entry points above use cases above store and clients above domain BROKEN",
        ),
        (
            "services/credentials/domain.py",
            "import aiohttp",
            "credentials: the domain does no I/O and knows no HTTP BROKEN",
        ),
        (
            "services/data_plane_agent/domain/manifests.py",
            "import kubernetes_asyncio",
            "data_plane_agent: the domain does no I/O and knows no HTTP BROKEN",
        ),
    ],
)
def test_an_import_that_climbs_a_layer_fails_the_lint(
    tmp_path: Path, module: str, bad_import: str, broken_contract: str
) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / module
    source = target.read_text()
    target.write_text(
        source.replace(
            "from __future__ import annotations\n", f"from __future__ import annotations\n\n{bad_import}\n", 1
        )
    )
    result = _lint(tree)
    assert result.returncode != 0
    assert broken_contract in " ".join(result.stdout.split()), result.stdout
