"""`landfall` imports only what the command being run needs (libs/cli/__init__.py, issue 15).

Every CI job pays the CLI's start-up on `landfall deploy --tag … --wait`; bench/cli_overhead.py
measures it against the same deploys without the CLI. This is the guard that does not depend on
the machine's speed: the installed executable runs against a local HTTP server (the webhook and
the long-poll answer at once) under `PYTHONPROFILEIMPORTTIME`, and the modules it imported are
read from that report. A change that brings back httpx, Rich on a non-terminal, pydantic, or
anything else of the list, fails here rather than quietly in the next `make bench`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_cli_transport import Peer, serving

LANDFALL = Path(sys.executable).parent / "landfall"
# Never on the deploy path: the HTTP libraries the CLI does not use (httpx and what it brings, the
# standard library's http.client with its email parser), TLS for an http:// address, the idna
# codec for an ASCII host, Rich without a terminal, validation it does not do, proxy and profile
# machinery without proxies or profiles, completion, Click's spelling suggestions.
NEVER_ON_DEPLOY = frozenset(
    {
        "httpx",
        "httpcore",
        "anyio",
        "http.client",
        "email",
        "ssl",
        "encodings.idna",
        "rich",
        "pygments",
        "pydantic",
        "typer",
        "urllib.request",
        "tomllib",
        "difflib",
        "certifi",
        "click.shell_completion",
        "libs.contracts",
        "libs.runtime",
    }
)


@pytest.fixture
def peer() -> Iterator[Peer]:
    with serving() as server:
        server.answer = {
            "deployment_id": "dep_1",
            "id": "dep_1",
            "status": "succeeded",
            "image": "127.0.0.1:5000/team/app:1.0",
            "digest": "sha256:" + "a" * 64,
            "component": "app",
            "environment": "development",
        }
        yield server


def imported(args: list[str], url: str, home: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the installed `landfall`; what it printed and the modules it imported."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LANDFALL_") and not k.lower().endswith("_proxy")
    }
    env.update(
        {
            "LANDFALL_URL": url,
            "LANDFALL_TOKEN": "lfci_" + "x" * 40,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "PYTHONPROFILEIMPORTTIME": "1",
        }
    )
    proc = subprocess.run(
        [str(LANDFALL), *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    modules = {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    modules.discard("package")  # the report's header line
    return proc, modules


def top_levels(modules: set[str], names: frozenset[str]) -> set[str]:
    """Which of `names` (or a module under one of them) were imported."""
    return {name for name in names for module in modules if module == name or module.startswith(name + ".")}


def test_a_ci_deploy_with_wait_imports_no_http_library_rich_or_pydantic(peer: Peer, tmp_path: Path) -> None:
    proc, modules = imported(["deploy", "--tag", "1.0", "--wait", "-o", "json"], peer.url, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"status": "succeeded"' in proc.stdout
    assert "h11" in modules  # the report is read right: what it does use is there
    assert top_levels(modules, NEVER_ON_DEPLOY) == set()


def test_the_people_form_of_deploy_needs_no_rich_without_a_terminal(peer: Peer, tmp_path: Path) -> None:
    proc, modules = imported(["deploy", "--tag", "1.0", "--wait"], peer.url, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("succeeded: 127.0.0.1:5000/team/app:1.0@sha256:")
    assert top_levels(modules, NEVER_ON_DEPLOY) == set()


def test_help_and_usage_errors_import_no_http_client(peer: Peer, tmp_path: Path) -> None:
    for args in (["--help"], ["deploy", "--help"], ["deploy", "--nope"]):
        proc, modules = imported(args, peer.url, tmp_path)
        assert proc.returncode in (0, 2), proc.stderr[-2000:]
        assert top_levels(modules, frozenset({"h11", "libs.cli.transport", "httpx", "rich"})) == set()
    assert peer.connections == 0
