"""`make up` as a newcomer runs it: the printed curl deploys, Ctrl-C leaves nothing, state survives.

Runs the real command (`python -m libs.devstack.stack up`, what `make up` calls) with
free ports in a temporary state directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from libs.contracts.naming import namespace_for
from libs.devstack.stack import http

ROOT = Path(__file__).resolve().parents[2]


def _start(state: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "libs.devstack.stack", "up", "--state-dir", str(state), "--random-ports"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "KUBECONFIG": "/nonexistent"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("make up did not come up:\n" + "".join(lines[-40:]))


def _stop(proc: subprocess.Popen[str], state: Path) -> list[int]:
    pids = list(json.loads((state / "pids.json").read_text()).values())
    proc.send_signal(signal.SIGINT)  # what Ctrl-C does
    assert proc.stdout is not None
    proc.stdout.read()
    assert proc.wait(60) == 0
    return pids


def _env(state: Path) -> dict[str, str]:
    text = (state / "local.env").read_text()
    return {m[1]: m[2].strip("'") for m in re.finditer(r"^export (\w+)=(.*)$", text, re.M)}


def test_make_up_deploys_the_printed_curl_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "landfall"
    proc, output = _start(state)
    try:
        assert "SANDBOX" in output  # no cluster here: the output says plainly it is a sandbox
        env = _env(state)
        for key in (
            "LANDFALL_GATEWAY_URL",
            "LANDFALL_CREDENTIALS_URL",
            "LANDFALL_ORCHESTRATOR_URL",
            "LANDFALL_ADMIN_TOKEN",
            "LANDFALL_DATABASE_URL",
            "LANDFALL_NATS_URL",
            "VAULT_ADDR",
            "VAULT_TOKEN",
            "LANDFALL_SANDBOX_KUBE_URL",
            "LANDFALL_ORG_KEY",
        ):
            assert env.get(key), key
        # Both credentials are printed, each with what it is for.
        assert env["LANDFALL_ORG_KEY"].startswith("lfk_")
        assert env["LANDFALL_ORG_KEY"] in output
        assert env["LANDFALL_ADMIN_TOKEN"] in output
        assert "landfall login --url $LANDFALL_URL --token $LANDFALL_ORG_KEY" in output
        assert "Only to create orgs" in output
        org_key = env["LANDFALL_ORG_KEY"]
        curl = output[output.index("curl -sS -X POST") : output.index("then wait")].strip()
        accepted = json.loads(
            subprocess.run(
                ["bash", "-c", curl], capture_output=True, text=True, check=True, timeout=30
            ).stdout
        )
        status, final = http(
            "GET",
            f"{env['LANDFALL_GATEWAY_URL']}/v1/webhooks/deployments/{accepted['deployment_id']}?wait=30",
            token=env["LANDFALL_DEMO_CI_TOKEN"],
            timeout=40,
        )
        assert status == 200
        assert final["status"] == "succeeded", final
    finally:
        pids = _stop(proc, state)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left behind: {alive}"

    # A second `make up` finds the earlier registry, component and deployment.
    proc, _ = _start(state)
    try:
        env = _env(state)
        assert env["LANDFALL_ORG_KEY"] == org_key  # kept in the state, like the admin token
        status, history = http(
            "GET",
            f"{env['LANDFALL_ORCHESTRATOR_URL']}/v1/orgs/default/projects/default/components/hello/deployments",
            token=env["LANDFALL_ORG_KEY"],
        )
        assert status == 200
        assert accepted["deployment_id"] in [d["id"] for d in history["items"]]
        status, registries = http(
            "GET",
            f"{env['LANDFALL_CREDENTIALS_URL']}/v1/orgs/default/registries",
            token=env["LANDFALL_ORG_KEY"],
        )
        assert status == 200
        assert len(registries["items"]) == 1
        # ... and the sandbox data plane still runs it: its objects were kept too.
        namespace = namespace_for("default", "default", "development")
        status, running = http(
            "GET", f"{env['LANDFALL_SANDBOX_KUBE_URL']}/apis/apps/v1/namespaces/{namespace}/deployments/hello"
        )
        assert status == 200
        assert running["metadata"]["annotations"]["landfall.dev/deployment-id"] == accepted["deployment_id"]
    finally:
        _stop(proc, state)
