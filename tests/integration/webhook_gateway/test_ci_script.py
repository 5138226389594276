"""deploy/ci/landfall-deploy.sh and the ci-snippets endpoint, run for real against an in-process gateway."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import yaml

from tests.integration.webhook_gateway.helpers import COMPONENT_PATH, Env, admin
from tests.support import bearer

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "ci" / "landfall-deploy.sh"


async def run(*argv: str, token: str | None = None, script: Path = SCRIPT) -> tuple[int, str, str]:
    """Run the deploy script as CI would, with none of this process's LANDFALL_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANDFALL_")}
    env.update({"LANDFALL_TIMEOUT": "60", "NO_PROXY": "*", "no_proxy": "*"})
    if token is not None:
        env["LANDFALL_CI_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(script),
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_script_exits_0_when_the_rollout_succeeds(env: Env) -> None:
    env.orch.auto_finish = "succeeded"
    code, out, err = await run(env.url, "ghcr.io/acme/api:1.2.3", token=env.token)
    assert code == 0, (out, err)
    assert "succeeded" in out
    (event,) = env.orch.pushed
    assert event.image == "ghcr.io/acme/api:1.2.3"
    assert env.token not in out + err


@pytest.mark.parametrize("final", ["failed", "superseded"])
async def test_script_fails_when_the_rollout_does_not_succeed(env: Env, final: str) -> None:
    env.orch.auto_finish = final
    code, out, err = await run(env.url, "ghcr.io/acme/api:1.2.3", token=env.token)
    assert code == 1, (out, err)
    assert final in err


async def test_script_refusals_and_usage(env: Env) -> None:
    code, _, err = await run(env.url, "ghcr.io/acme/other:1.0", token=env.token)
    assert code == 3
    assert "403" in err
    code, _, err = await run(env.url, "ghcr.io/acme/api:1.0")
    assert code == 2
    assert "LANDFALL_CI_TOKEN" in err
    code, _, err = await run(token=env.token)
    assert code == 2
    assert "usage" in err
    assert env.orch.pushed == []


async def test_ci_snippets_are_ready_to_paste(env: Env, tmp_path: Path) -> None:
    resp = await env.client.get(f"{COMPONENT_PATH}/api/ci-snippets", headers=admin(env.settings))
    assert resp.status == 200, await resp.text()
    snippets = await resp.json()
    assert snippets["gateway_url"] == env.url
    assert snippets["image"] == "ghcr.io/acme/api:1.0.0"
    assert "set -euo pipefail" in snippets["curl"]
    assert "LANDFALL_CI_TOKEN" in snippets["curl"]

    # GitHub and GitLab run the landfall CLI (1da61ed): this gateway, the commit's tag, the stored token.
    _, step = yaml.safe_load(snippets["github_actions"])
    assert step["env"]["LANDFALL_TOKEN"] == "${{ secrets.LANDFALL_CI_TOKEN }}"
    assert step["env"]["LANDFALL_URL"] == env.url
    assert step["env"]["TAG"] == "${{ github.sha }}"
    job = yaml.safe_load(snippets["gitlab_ci"])["landfall-deploy"]
    assert job["variables"]["LANDFALL_URL"] == env.url
    assert job["variables"]["TAG"] == "$CI_COMMIT_SHA"
    assert "LANDFALL_TOKEN" not in job.get("variables", {})  # it comes from the CI/CD secret store

    # The curl snippet runs as pasted: its defaults are this gateway and this component's image.
    env.orch.auto_finish = "succeeded"
    script = tmp_path / "snippet.sh"
    script.write_text(snippets["curl"])
    code, out, err = await run(token=env.token, script=script)
    assert code == 0, (out, err)
    assert env.orch.pushed[0].image == "ghcr.io/acme/api:1.0.0"

    # A CI token is authenticated but reaches only the webhook: 403 (API.md), saying so.
    refused = await env.client.get(f"{COMPONENT_PATH}/api/ci-snippets", headers=bearer(env.token))
    assert refused.status == 403
    assert "webhook" in (await refused.json())["detail"]
    assert (
        await env.client.get(f"{COMPONENT_PATH}/nope/ci-snippets", headers=admin(env.settings))
    ).status == 404
