"""deploy/ci/landfall-deploy.sh and the ci-snippets endpoint, run for real against an in-process gateway."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from services.webhook_gateway.settings import Settings
from tests.integration.gateway_support import (
    COMPONENT_PATH,
    FakeOrchestrator,
    admin,
    bearer,
    component_info,
    create_token,
    fake_orchestrator,
    gateway_client,
    gateway_settings,
)

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "ci" / "landfall-deploy.sh"


class Env:
    def __init__(
        self, settings: Settings, orch: FakeOrchestrator, client: TestClient[Any, Any], token: str
    ) -> None:
        self.settings, self.orch, self.client, self.token = settings, orch, client, token

    @property
    def url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def run(self, *argv: str, token: str | None = None, script: Path = SCRIPT) -> tuple[int, str, str]:
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


@pytest.fixture
async def env(base_env: dict[str, str]) -> AsyncIterator[Env]:
    settings = gateway_settings(base_env)
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        token = (await create_token(client, settings))["token"]
        yield Env(settings, orch, client, token)


async def test_script_exits_0_when_the_rollout_succeeds(env: Env) -> None:
    env.orch.auto_finish = "succeeded"
    code, out, err = await env.run(env.url, "ghcr.io/acme/api:1.2.3", token=env.token)
    assert code == 0, (out, err)
    assert "succeeded" in out
    (event,) = env.orch.pushed
    assert event.image == "ghcr.io/acme/api:1.2.3"
    assert env.token not in out + err


@pytest.mark.parametrize("final", ["failed", "superseded"])
async def test_script_fails_when_the_rollout_does_not_succeed(env: Env, final: str) -> None:
    env.orch.auto_finish = final
    code, out, err = await env.run(env.url, "ghcr.io/acme/api:1.2.3", token=env.token)
    assert code == 1, (out, err)
    assert final in err


async def test_script_refusals_and_usage(env: Env) -> None:
    code, _, err = await env.run(env.url, "ghcr.io/acme/other:1.0", token=env.token)
    assert code == 3
    assert "403" in err
    code, _, err = await env.run(env.url, "ghcr.io/acme/api:1.0")
    assert code == 2
    assert "LANDFALL_CI_TOKEN" in err
    code, _, err = await env.run(token=env.token)
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

    step = yaml.safe_load(snippets["github_actions"])
    assert step[0]["env"]["LANDFALL_CI_TOKEN"] == "${{ secrets.LANDFALL_CI_TOKEN }}"
    assert step[0]["env"]["LANDFALL_GATEWAY_URL"] == env.url
    assert step[0]["env"]["LANDFALL_IMAGE"] == "ghcr.io/acme/api:${{ github.sha }}"
    job = yaml.safe_load(snippets["gitlab_ci"])["landfall-deploy"]
    assert job["variables"]["LANDFALL_IMAGE"] == "ghcr.io/acme/api:$CI_COMMIT_SHA"
    assert "LANDFALL_CI_TOKEN" not in job.get("variables", {})  # it comes from the CI/CD secret store

    # The curl snippet runs as pasted: its defaults are this gateway and this component's image.
    env.orch.auto_finish = "succeeded"
    script = tmp_path / "snippet.sh"
    script.write_text(snippets["curl"])
    code, out, err = await env.run(token=env.token, script=script)
    assert code == 0, (out, err)
    assert env.orch.pushed[0].image == "ghcr.io/acme/api:1.0.0"

    assert (
        await env.client.get(f"{COMPONENT_PATH}/api/ci-snippets", headers=bearer(env.token))
    ).status == 401
    assert (
        await env.client.get(f"{COMPONENT_PATH}/nope/ci-snippets", headers=admin(env.settings))
    ).status == 404
