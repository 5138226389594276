"""What CI sees, through HTTP, against the real stack (issue: External CI).

Tokens, image checks, limits, idempotency, signatures, the long-poll on
success and on failure, and the shipped CI script's exit status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from libs.devstack.stack import Stack, http
from tests.e2e.conftest import logs_of, sandbox_post

ROOT = Path(__file__).resolve().parents[2]


def raw_post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body else None, dict(exc.headers)


class Component:
    def __init__(self, stack: Stack, kind: str = "svc") -> None:
        self.stack = stack
        self.name = kind + uuid.uuid4().hex[:6]
        self.repo = f"team/{self.name}"
        if "registry_id" not in stack.state:
            reg = stack.api(
                "credentials",
                "POST",
                "/v1/orgs/default/registries",
                {"display_name": "ci e2e", "auth": {"type": "anonymous", "host": stack.registry.host}},
            )
            stack.state["registry_id"] = reg["id"]
        stack.api(
            "orchestrator",
            "POST",
            "/v1/orgs/default/projects/default/components",
            {
                "name": self.name,
                "type": "service",
                "registry_id": stack.state["registry_id"],
                "image": f"{stack.registry.host}/{self.repo}:0",
                "port": 8080,
            },
        )
        self.base = f"/v1/orgs/default/projects/default/components/{self.name}"
        self.token_id, self.token = self.new_token()

    def new_token(self) -> tuple[str, str]:
        tok = self.stack.api("webhook_gateway", "POST", self.base + "/tokens", {"name": "ci"})
        return tok["id"], tok["token"]

    def push(self, tag: str) -> str:
        return self.stack.registry.push_image(self.repo, tag)

    def deploy(
        self, body: dict[str, str], *, token: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        return raw_post(
            self.stack.url("webhook_gateway") + "/v1/webhooks/deploy",
            json.dumps(body).encode(),
            {
                "Authorization": f"Bearer {self.token if token is None else token}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )

    def wait(self, deployment_id: str, wait: int = 30, token: str | None = None) -> tuple[int, Any]:
        return http(
            "GET",
            f"{self.stack.url('webhook_gateway')}/v1/webhooks/deployments/{deployment_id}?wait={wait}",
            token=token or self.token,
            timeout=wait + 10,
        )


def test_tokens_that_must_not_work(stack: Stack) -> None:
    comp = Component(stack)
    comp.push("1.0")
    assert comp.deploy({"tag": "1.0"}, token="lfci_wrong")[0] == 401
    assert comp.deploy({"tag": "1.0"}, token="")[0] == 401

    other = Component(stack)
    status, problem, _ = comp.deploy({"image": f"{stack.registry.host}/{other.repo}:1.0"})
    assert status == 403, problem  # the token is bound to its own component

    extra_id, extra = comp.new_token()
    assert comp.deploy({"tag": "1.0"}, token=extra)[0] == 202
    stack.api("webhook_gateway", "DELETE", f"{comp.base}/tokens/{extra_id}", expect=(204,))
    status, problem, _ = comp.deploy({"tag": "1.0"}, token=extra)
    assert status == 401, problem
    # An expired token: made with an expiry, then time passes (moved in the database: the clock we can turn).
    tok = stack.api("webhook_gateway", "POST", comp.base + "/tokens", {"name": "short", "expires_in_days": 1})
    assert tok["expires_at"]
    subprocess.run(
        [
            str(stack.postgres.bin_dir / "psql"),
            stack.postgres.dsn,
            "-qc",
            "UPDATE webhook_gateway.ci_tokens SET expires_at = now() - interval '1 minute' "
            f"WHERE id = '{tok['id']}'",
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )
    status, problem, _ = comp.deploy({"tag": "1.0"}, token=tok["token"])
    assert status == 401, problem

    listed = stack.api("webhook_gateway", "GET", comp.base + "/tokens")
    assert all("token" not in item for item in listed["items"])
    assert comp.token not in logs_of(stack)


def test_a_deleted_components_tokens_do_not_work_for_a_new_one_of_the_same_name(stack: Stack) -> None:
    comp = Component(stack)
    comp.push("1.0")
    assert comp.deploy({"tag": "1.0"})[0] == 202
    stack.api("orchestrator", "DELETE", comp.base, expect=(204,))
    status, problem, _ = comp.deploy({"tag": "1.0"})
    assert status == 403, problem  # its component is gone

    # Someone creates a component with the same name: the old pipeline's token must not deploy to it.
    stack.api(
        "orchestrator",
        "POST",
        "/v1/orgs/default/projects/default/components",
        {
            "name": comp.name,
            "type": "service",
            "registry_id": stack.state["registry_id"],
            "image": f"{stack.registry.host}/{comp.repo}:0",
            "port": 8080,
        },
    )
    status, problem, _ = comp.deploy({"tag": "1.0"})
    assert status == 403, problem
    assert "create a token" in problem["detail"]
    assert stack.api("webhook_gateway", "GET", comp.base + "/tokens")["items"] == []
    new_id, new_token = comp.new_token()
    assert comp.deploy({"tag": "1.0"}, token=new_token)[0] == 202
    assert [t["id"] for t in stack.api("webhook_gateway", "GET", comp.base + "/tokens")["items"]] == [new_id]


def test_images_and_bodies_that_are_refused(stack: Stack) -> None:
    comp = Component(stack)
    url = stack.url("webhook_gateway") + "/v1/webhooks/deploy"
    auth = {"Authorization": f"Bearer {comp.token}"}
    assert comp.deploy({"image": f"ghcr.io/someone/{comp.name}:1"})[0] == 403
    assert comp.deploy({"image": f"{stack.registry.host}/team/other:1"})[0] == 403
    for bad in ({"tag": "-bad"}, {"tag": "x" * 129}, {"digest": "sha256:123"}, {"image": "UPPER/case:1"}, {}):
        status, problem, _ = comp.deploy(bad)
        assert status == 422, (bad, problem)
        assert problem["errors"], problem
    status, _, _ = raw_post(
        url, b"{" + b" " * (65 * 1024) + b"}", {**auth, "Content-Type": "application/json"}
    )
    assert status == 413
    assert raw_post(url, b"tag=1", {**auth, "Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    assert raw_post(url, b"{not json", {**auth, "Content-Type": "application/json"})[0] == 400


def test_rate_limit_answers_429_with_retry_after(stack: Stack) -> None:
    comp = Component(stack)
    comp.push("1.0")
    statuses = []
    for _ in range(80):
        status, _, headers = comp.deploy({"tag": "1.0"})
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {202}


def test_idempotent_retries_return_the_same_deployment(stack: Stack) -> None:
    comp = Component(stack)
    comp.push("1.0")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = comp.deploy({"tag": "1.0"}, headers=key)
    again = comp.deploy({"tag": "1.0"}, headers=key)
    assert first[0] == again[0] == 202
    assert first[1]["deployment_id"] == again[1]["deployment_id"]
    assert comp.wait(first[1]["deployment_id"])[1]["status"] == "succeeded"
    history = stack.api(
        "orchestrator", "GET", f"/v1/orgs/default/projects/default/components/{comp.name}/deployments"
    )
    assert [d["id"] for d in history["items"]] == [first[1]["deployment_id"]]


def _sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_signed_webhooks(stack: Stack) -> None:
    comp = Component(stack)
    comp.push("1.0")
    secret = stack.api("webhook_gateway", "POST", comp.base + "/signing-secret", {})["secret"]
    url = stack.url("webhook_gateway") + "/v1/webhooks/deploy"
    body = json.dumps({"tag": "1.0"}).encode()
    base = {"Authorization": f"Bearer {comp.token}", "Content-Type": "application/json"}

    def send(msg_id: str, ts: int, signature: str) -> int:
        headers = {**base, "webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
        return raw_post(url, body, headers)[0]

    now = int(time.time())
    assert raw_post(url, body, base)[0] == 401  # unsigned
    good_id = "msg_" + uuid.uuid4().hex
    assert send(good_id, now, _sign(secret, good_id, now, body)) == 202
    assert send(good_id, now, _sign(secret, good_id, now, body)) == 409  # replayed
    bad_id = "msg_" + uuid.uuid4().hex
    assert send(bad_id, now, _sign("whsec_" + base64.b64encode(b"x" * 24).decode(), bad_id, now, body)) == 401
    stale_id = "msg_" + uuid.uuid4().hex
    assert send(stale_id, now - 3600, _sign(secret, stale_id, now - 3600, body)) == 401
    assert secret not in logs_of(stack)


def test_long_poll_tells_ci_about_a_failed_rollout(stack: Stack) -> None:
    comp = Component(stack, "bad")
    comp.push("9.9")
    sandbox_post(
        stack,
        "/_sandbox/failure-rules",
        {"image_contains": comp.repo, "reason": "ImagePullBackOff", "message": "Back-off pulling image"},
    )
    status, accepted, _ = comp.deploy({"tag": "9.9"})
    assert status == 202
    code, final = comp.wait(accepted["deployment_id"])
    assert code == 200
    assert final["status"] == "failed", final
    assert final["reason"] == "ImagePullBackOff"
    assert comp.wait(accepted["deployment_id"], token=Component(stack).token)[0] == 404  # other component


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_the_ci_script_exits_with_the_rollout(stack: Stack, outcome: str) -> None:
    comp = Component(stack, "sh")
    comp.push("2.0")
    if outcome == "failed":
        sandbox_post(
            stack, "/_sandbox/failure-rules", {"image_contains": comp.repo, "reason": "CrashLoopBackOff"}
        )
    run = subprocess.run(
        [
            "bash",
            str(ROOT / "deploy/ci/landfall-deploy.sh"),
            stack.url("webhook_gateway"),
            f"{stack.registry.host}/{comp.repo}:2.0",
        ],
        env={**os.environ, "LANDFALL_CI_TOKEN": comp.token, "LANDFALL_TIMEOUT": "60"},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    # The script's contract (deploy/ci/landfall-deploy.sh): 0 succeeded, 1 failed; 3 would mean it
    # never saw a final status, 2 a usage error: neither is the rollout's answer.
    assert run.returncode == {"succeeded": 0, "failed": 1}[outcome], run.stdout + run.stderr
    if outcome == "failed":
        assert "deployment failed" in run.stderr
        assert "CrashLoopBackOff" in run.stderr, run.stderr
    assert comp.token not in run.stdout + run.stderr
