"""The whole stack as separate OS processes, talking only over NATS and HTTP.

One stack per test module (it takes a few seconds to start): its own
nats-server, PostgreSQL, OpenBao (dev mode), docker-registry, the sandbox
Kubernetes API and the four services, on free ports in a temporary directory.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chaos.stack import ChaosStack
from chaos.stack import start as start_chaos_stack
from libs.devstack.stack import Stack, http, random_ports
from tests.support import wait_until

FINAL = {"succeeded", "failed", "superseded"}


@contextmanager
def running_stack(
    root: Path, *, demo: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """The stack as `make up` starts it (an agent enrolled; `demo`: its components too), stopped after."""
    s = Stack(root, ports=random_ports(), persistent_vault=False, extra_env=extra_env or {})
    try:
        s.start_infra()
        s.start_sandbox()
        s.start_services()
        s.provision()
        s.start_service("data_plane_agent")
        if demo:
            s.provision_demo()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


def kube_get(stack: Stack, path: str) -> tuple[int, Any]:
    return http("GET", stack.sandbox_url + path)


def sandbox_post(stack: Stack, path: str, body: Any) -> None:
    req = urllib.request.Request(
        stack.sandbox_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5):
        pass


def final_deployment(stack: Stack, deployment_id: str, *, timeout: float = 30) -> dict[str, Any]:
    """The deployment's view from the public API once it is final."""

    def done() -> dict[str, Any] | None:
        view: dict[str, Any] = stack.api("orchestrator", "GET", f"/v1/deployments/{deployment_id}")
        return view if view["status"] in FINAL else None

    return wait_until(done, timeout=timeout, what=f"deployment {deployment_id}")


def logs_of(stack: Stack) -> str:
    return "\n".join(p.read_text(errors="replace") for p in Path(stack.root, "logs").glob("*.log"))


# --- the chaos stack (tests/e2e/test_chaos_quick.py, test_hostile_input.py, test_tenancy_and_secrets.py) ---


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    """A stack for the short versions of `make chaos`, built by `chaos.stack.start`.

    Unlike `stack`: OpenBao keeps its data across a SIGKILL (raft storage), a second, private
    registry holds the images of some components, and the per-token rate limit is lifted.
    """
    root = tmp_path_factory.mktemp("chaos")
    chaos = start_chaos_stack(root / "stack", private_password="chaos-" + secrets.token_urlsafe(18))
    try:
        yield chaos
    finally:
        chaos.stop()
