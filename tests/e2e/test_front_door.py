"""`LANDFALL_URL`: every service's endpoints answer under the front door's one address.

Speaks only to `stack.front_url` (what the `landfall` CLI and people use) and checks that
each service is reached, that headers and status codes pass both ways, that a long-poll is
held as long as the gateway holds it, and that a stopped service is a 503 problem.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from libs.contracts.subjects import Subjects
from libs.devstack.front_door import route
from libs.devstack.servers.nats_cluster import NatsCluster
from libs.devstack.stack import Stack, http
from tests.support import wait_until


def _raw(stack: Stack, method: str, path: str) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(stack.front_url + path, method=method)
    req.add_header("Authorization", f"Bearer {stack.org_key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def _front(stack: Stack, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
    status, payload = http(method, stack.front_url + path, token=token or stack.org_key, body=body)
    assert status in (200, 201, 202), (method, path, status, payload)
    return payload


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/v1/orgs/default/registries", "credentials"),
        ("/v1/orgs/default/registries/reg_1/test", "credentials"),
        ("/v1/webhooks/deploy", "webhook_gateway"),
        ("/v1/webhooks/deployments/dep_1", "webhook_gateway"),
        ("/v1/orgs/o/projects/p/components/c/tokens", "webhook_gateway"),
        ("/v1/orgs/o/projects/p/components/c/tokens/tok_1", "webhook_gateway"),
        ("/v1/orgs/o/projects/p/components/c/signing-secret", "webhook_gateway"),
        ("/v1/orgs/o/projects/p/components/c/ci-snippets", "webhook_gateway"),
        ("/v1/orgs/o/projects/p/components/c", "orchestrator"),
        ("/v1/orgs/o/projects/p/components/tokens", "orchestrator"),  # a component named "tokens"
        ("/v1/orgs/o/registries-x", "orchestrator"),
        ("/v1/deployments/dep_1", "orchestrator"),
        ("/v1/orgs", "orchestrator"),
        ("/metrics", None),
    ],
)
def test_routing_table(path: str, service: str | None) -> None:
    assert route(path) == service


def test_every_service_answers_under_the_one_address(stack: Stack) -> None:
    assert http("GET", stack.front_url + "/healthz")[0] == 200
    assert http("GET", stack.front_url + "/readyz")[0] == 200
    name = "door" + uuid.uuid4().hex[:6]
    stack.registry.push_image(f"team/{name}", "1.0")

    # credentials, orchestrator, webhook-gateway, all through the front door
    reg = _front(
        stack,
        "POST",
        "/v1/orgs/default/registries",
        {"display_name": f"reg {name}", "auth": {"type": "anonymous", "host": stack.registry.host}},
    )
    assert reg["id"] in [r["id"] for r in _front(stack, "GET", "/v1/orgs/default/registries")["items"]]
    component = {
        "name": name,
        "type": "service",
        "registry_id": reg["id"],
        "image": f"{stack.registry.host}/team/{name}:1.0",
        "port": 8080,
    }
    _front(stack, "POST", "/v1/orgs/default/projects/default/components", component)
    assert _front(stack, "GET", f"/v1/orgs/default/projects/default/components/{name}")["name"] == name
    token = _front(stack, "POST", f"/v1/orgs/default/projects/default/components/{name}/tokens", {})["token"]

    # the status code and end-to-end headers pass unchanged, both ways
    status, headers, problem = _raw(stack, "GET", "/v1/orgs/default/registries/reg_doesnotexist")
    assert status == 404, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    key = {"Idempotency-Key": "door-" + uuid.uuid4().hex}
    first = _webhook(stack, token, {"tag": "1.0"}, key)
    again = _webhook(stack, token, {"tag": "1.0"}, key)
    assert again["deployment_id"] == first["deployment_id"]

    # the long-poll: the front door holds it as long as the gateway does
    path = f"/v1/webhooks/deployments/{first['deployment_id']}?wait=30"
    status, final = http("GET", stack.front_url + path, token=token, timeout=40)
    assert status == 200, final
    assert final["status"] == "succeeded", final


def _webhook(stack: Stack, token: str, body: dict[str, str], headers: dict[str, str]) -> dict[str, str]:
    req = urllib.request.Request(
        stack.front_url + "/v1/webhooks/deploy",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
        accepted: dict[str, str] = json.loads(resp.read())
        return accepted


def test_a_long_poll_is_held_until_the_gateway_answers(stack: Stack) -> None:
    name = "hold" + uuid.uuid4().hex[:6]
    stack.registry.push_image(f"team/{name}", "1.0")
    _, token = stack.add_component(name, f"{stack.registry.host}/team/{name}:1.0", port=None)
    stack.stop_service("data_plane_agent")  # nothing rolls out: the poll waits its full time
    try:
        accepted = _webhook(stack, token, {"tag": "1.0"}, {})
        path = f"/v1/webhooks/deployments/{accepted['deployment_id']}?wait=8"
        changes = Subjects(stack.bus_prefix).deployment_changed(accepted["deployment_id"])
        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(http, "GET", stack.front_url + path, token=token, timeout=20)
            # The poll came through the front door and the gateway holds it: it listens for changes.
            wait_until(lambda: _subscribed(stack, changes), what=f"a subscription to {changes}")
            status, during = poll.result()
        assert status == 200, during
        assert during["status"] in {"pending", "dispatched"}
    finally:
        stack.start_service("data_plane_agent")


def _subscribed(stack: Stack, subject: str) -> bool:
    """Whether some client of nats-server subscribes to `subject` (its monitoring `/connz?subs=1`)."""
    servers = stack.nats.nodes if isinstance(stack.nats, NatsCluster) else [stack.nats]
    for server in servers:
        status, connz = http("GET", server.monitor_url + "/connz?subs=1")
        assert status == 200, connz
        if any(subject in (c.get("subscriptions_list") or []) for c in connz.get("connections") or []):
            return True
    return False


def test_a_stopped_service_is_a_503_problem_naming_it(stack: Stack) -> None:
    stack.stop_service("credentials")
    try:
        status, headers, problem = _raw(stack, "GET", "/v1/orgs/default/registries")
        assert status == 503
        assert headers["Content-Type"].startswith("application/problem+json")
        assert int(headers["Retry-After"]) > 0
        assert set(problem) >= {"type", "title", "status", "detail"}
        assert problem["status"] == 503
        assert "credentials" in problem["detail"]
        # the other services still answer
        assert _raw(stack, "GET", "/v1/orgs/default/environments")[0] == 200
    finally:
        stack.restart_service("credentials")
    assert _raw(stack, "GET", "/v1/orgs/default/registries")[0] == 200
