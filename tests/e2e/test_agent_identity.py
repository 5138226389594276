"""The real agent process renews its NATS user before it expires and keeps deploying past the first
JWT's expiry (issue 13): the stack as `make up` runs it, with the agents' JWTs made to last 4 s.

nats-server is the judge of expiry: a JWT that was not renewed in time closes the agent's connection
and refuses it (the integration tests show that side); here the agent must stay connected, heartbeat
and deploy after its enrollment JWT is past its `exp`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from libs.devstack.stack import Stack, http
from libs.runtime.natsauth import jwt_lifetime
from tests.e2e.conftest import logs_of, running_stack
from tests.support import wait_until

TTL = 4


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("identity"), extra_env={"LANDFALL_AGENT_JWT_TTL_SECONDS": str(TTL)}
    ) as s:
        yield s


def _saved_jwt(stack: Stack) -> str:
    return str(json.loads((stack.root / "agent" / "agent.json").read_text())["nats_jwt"])


def test_the_agent_renews_its_nats_user_and_keeps_deploying_past_the_first_expiry(short_lived: Stack) -> None:
    s = short_lived
    first = _saved_jwt(s)
    _, first_exp = jwt_lifetime(first)
    assert first_exp is not None  # LANDFALL_AGENT_JWT_TTL_SECONDS reached the orchestrator

    # agent.json holds a renewed JWT (a restart would use it), and the first one's expiry has passed
    def renewed_and_expired() -> str | None:
        jwt = _saved_jwt(s)
        return jwt if jwt != first and time.time() > first_exp + 1 else None

    renewed = wait_until(renewed_and_expired, timeout=TTL * 5, what="a renewed JWT saved, the first expired")
    _, renewed_exp = jwt_lifetime(renewed)
    assert renewed_exp is not None
    assert renewed_exp > first_exp

    # still connected: a heartbeat seen after the first JWT expired, and a deployment goes through
    def seen_since_expiry() -> bool:
        planes = s.api("orchestrator", "GET", "/v1/orgs/default/dataplanes")
        (local,) = [p for p in planes["items"] if p["name"] == "local"]
        return bool(local["agent"]["connected"]) and local["agent"]["last_seen"] > _iso(first_exp)

    wait_until(seen_since_expiry, timeout=30, what="a heartbeat after the first JWT expired")
    name = "renew" + uuid.uuid4().hex[:6]
    s.registry.push_image(f"team/{name}", "1.0")
    _, token = s.add_component(name, f"{s.registry.host}/team/{name}:1.0", auth={"type": "anonymous"})
    status, accepted = http(
        "POST", s.url("webhook_gateway") + "/v1/webhooks/deploy", token=token, body={"tag": "1.0"}
    )
    assert status == 202, accepted
    assert isinstance(accepted, dict)
    view = wait_until(
        lambda: _final(s, token, accepted["deployment_id"]), timeout=60, what="the deployment to be final"
    )
    assert view["status"] == "succeeded", view
    assert "NATS user renewed" in logs_of(s)


def _final(stack: Stack, token: str, deployment_id: str) -> dict[str, Any] | None:
    """The CI's long-poll (the gateway answers once the deployment is recorded and final, or at `wait`)."""
    status, view = http(
        "GET",
        f"{stack.url('webhook_gateway')}/v1/webhooks/deployments/{deployment_id}?wait=20",
        token=token,
        timeout=30,
    )
    if status != 200 or not isinstance(view, dict):
        return None  # not recorded yet
    return view if view["status"] in ("succeeded", "failed", "superseded") else None


def _iso(unix: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix))
