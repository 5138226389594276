"""One audit trail: the acceptance flow through `LANDFALL_URL`, and one event per change in it.

A user's day, as the issue's acceptance walks it, with an owner key, a developer key and a CI
token: register a registry, create a component, create a CI token, deploy by webhook, promote,
run a manual task, revoke the token; plus what only the platform does (an org) and a refused
attempt (a viewer creating a component). Every request carries an `X-Request-Id` of the test's,
which every answer returns; then `GET /v1/orgs/{org}/audit` holds exactly one event per request,
with the right actor (`api_key` id and name, `ci_token` id, name and component, `platform`), and
nowhere a secret (the registry password, the CI token, the keys).
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from typing import Any

import pytest

from libs.devstack.stack import Stack
from tests.support import wait_until


class Flow:
    """Requests through the front door, each with its own request id, remembered by step."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.request_ids: dict[str, str] = {}

    def call(
        self, step: str, method: str, path: str, token: str, body: Any = None, **extra: str
    ) -> tuple[int, Any]:
        rid = f"audit-{step}-{secrets.token_hex(4)}"
        self.request_ids[step] = rid
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.stack.front_url + path, data=data, method=method)
        for name, value in extra.items():  # Idempotency_Key= -> Idempotency-Key
            req.add_header(name.replace("_", "-"), value)
        req.add_header("Authorization", f"Bearer {token}")
        req.add_header("X-Request-Id", rid)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=40) as resp:
                status, headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            status, headers, raw = exc.code, exc.headers, exc.read()
        assert headers["X-Request-Id"] == rid, (step, dict(headers))
        return status, json.loads(raw) if raw else None

    def ok(self, step: str, method: str, path: str, token: str, body: Any = None, **extra: str) -> Any:
        status, answer = self.call(step, method, path, token, body, **extra)
        assert 200 <= status < 300, (step, status, answer)
        return answer


def audit_of(stack: Stack, org: str, token: str, query: str = "") -> tuple[list[dict[str, Any]], str]:
    """Every page of an org's audit trail (newest first), and the raw text of all of them."""
    items: list[dict[str, Any]] = []
    texts: list[str] = []
    cursor = ""
    while True:
        path = f"/v1/orgs/{org}/audit?limit=100{query}" + (f"&cursor={cursor}" if cursor else "")
        req = urllib.request.Request(stack.front_url + path)
        req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read().decode()
        texts.append(raw)
        page = json.loads(raw)
        items += page["items"]
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return items, "\n".join(texts)


@pytest.mark.timeout(180)
def test_one_event_per_change_with_its_actor_and_no_secret(stack: Stack) -> None:
    owner = stack.org_key
    assert owner
    developer = stack.new_key("default", "developer", name="audit-dev")
    viewer = stack.new_key("default", "viewer", name="audit-viewer")
    owner_id = next(
        k["id"]
        for k in stack.api("orchestrator", "GET", "/v1/orgs/default/api-keys")["items"]
        if k["name"] == "local-owner"
    )
    dev = developer["key"]
    password = "audit-pass-" + secrets.token_urlsafe(12)
    name = "aud" + secrets.token_hex(3)
    for repo in (name, f"{name}-task"):
        stack.registry.push_image(f"team/{repo}", "1.0")
    flow = Flow(stack)
    base = f"/v1/orgs/default/projects/default/components/{name}"

    registry = flow.ok(
        "registry",
        "POST",
        "/v1/orgs/default/registries",
        owner,
        {
            "display_name": f"audit {name}",
            "auth": {"type": "basic", "host": stack.registry.host, "username": "ci", "password": password},
        },
    )
    component = {"type": "service", "registry_id": registry["id"], "port": 8080}
    flow.ok(
        "component",
        "POST",
        "/v1/orgs/default/projects/default/components",
        dev,
        {**component, "name": name, "image": f"{stack.registry.host}/team/{name}:1.0"},
    )
    status, _ = flow.call(
        "refused",
        "POST",
        "/v1/orgs/default/projects/default/components",
        viewer["key"],
        {**component, "name": name + "-no", "image": f"{stack.registry.host}/team/{name}:1.0"},
    )
    assert status == 403
    token = flow.ok("token", "POST", f"{base}/tokens", dev, {"name": "audit-ci"})
    key = {"Idempotency_Key": "audit-" + secrets.token_hex(6)}
    accepted = flow.ok("webhook", "POST", "/v1/webhooks/deploy", token["token"], {"tag": "1.0"}, **key)
    # CI's retry of the same request (its answer lost) repeats the answer and changes nothing
    again = flow.ok("retry", "POST", "/v1/webhooks/deploy", token["token"], {"tag": "1.0"}, **key)
    assert again["deployment_id"] == accepted["deployment_id"]
    status, final = flow.call(
        "wait", "GET", f"/v1/webhooks/deployments/{accepted['deployment_id']}?wait=30", token["token"]
    )
    assert (status, final["status"]) == (200, "succeeded"), final
    flow.ok("promote", "POST", f"{base}/promotions", dev, {"from": "development", "to": "staging"})
    task = f"{name}-task"
    flow.ok(
        "task",
        "POST",
        "/v1/orgs/default/projects/default/components",
        dev,
        {
            "type": "manual-task",
            "registry_id": registry["id"],
            "name": task,
            "image": f"{stack.registry.host}/team/{task}:1.0",
        },
    )
    task_base = f"/v1/orgs/default/projects/default/components/{task}"
    template = flow.ok("template", "POST", f"{task_base}/deployments", dev, {"tag": "1.0"})
    wait_until(
        lambda: (
            stack.api("orchestrator", "GET", f"/v1/deployments/{template['id']}", token=dev)["status"]
            == "succeeded"
        ),
        what="the manual task's template in place",
    )
    flow.ok("execution", "POST", f"{task_base}/executions", dev, {})
    flow.ok("revoke", "DELETE", f"{base}/tokens/{token['id']}", dev)
    org = "aud-" + secrets.token_hex(3)
    flow.ok("org", "POST", "/v1/orgs", stack.admin_token, {"name": org})

    expected = {  # step → (action, actor type, actor id, actor name, outcome)
        "registry": ("registry.create", "api_key", owner_id, "local-owner", "ok"),
        "component": ("component.create", "api_key", developer["id"], "audit-dev", "ok"),
        "refused": ("component.create", "api_key", viewer["id"], "audit-viewer", "refused"),
        "token": ("citoken.create", "api_key", developer["id"], "audit-dev", "ok"),
        "webhook": ("deployment.create", "ci_token", token["id"], "audit-ci", "ok"),
        "promote": ("promotion.create", "api_key", developer["id"], "audit-dev", "ok"),
        "task": ("component.create", "api_key", developer["id"], "audit-dev", "ok"),
        "template": ("deployment.create", "api_key", developer["id"], "audit-dev", "ok"),
        "execution": ("execution.create", "api_key", developer["id"], "audit-dev", "ok"),
        "revoke": ("citoken.revoke", "api_key", developer["id"], "audit-dev", "ok"),
    }
    wanted = {flow.request_ids[step]: step for step in expected}

    def found() -> tuple[list[dict[str, Any]], str] | None:
        items, text = audit_of(stack, "default", viewer["key"])
        mine = [i for i in items if i.get("request_id") in wanted]
        return (mine, text) if {i["request_id"] for i in mine} == set(wanted) else None

    mine, text = wait_until(found, timeout=20, what="an audit event for every step")
    by_step: dict[str, list[dict[str, Any]]] = {}
    for item in mine:
        by_step.setdefault(wanted[item["request_id"]], []).append(item)
    for step, (action, kind, actor_id, actor_name, outcome) in expected.items():
        events = by_step[step]
        assert len(events) == 1, (step, events)  # one event per change, whichever service made it
        event = events[0]
        assert (event["action"], event["outcome"]) == (action, outcome), (step, event)
        assert (event["actor"]["type"], event["actor"].get("id"), event["actor"].get("name")) == (
            kind,
            actor_id,
            actor_name,
        ), (step, event)
    assert by_step["webhook"][0]["actor"]["component"] == f"default/{name}"
    assert by_step["refused"][0]["status"] == 403
    assert by_step["registry"][0]["target"] == registry["id"]
    assert "wait" not in {wanted.get(i["request_id"]) for i in mine}  # reads are not changes

    # Newest first, and the filters narrow it.
    times = [i["time"] for i in mine]
    assert times == sorted(times, reverse=True)
    only_ci, _ = audit_of(stack, "default", viewer["key"], f"&actor_id={token['id']}")
    # one item for the deploy, none for its idempotent retry (the gateway's later revoke is in already)
    assert [i["request_id"] for i in only_ci] == [flow.request_ids["webhook"]]
    revokes, _ = audit_of(stack, "default", viewer["key"], "&action=citoken.revoke")
    assert flow.request_ids["revoke"] in [i["request_id"] for i in revokes]
    assert {i["action"] for i in revokes} == {"citoken.revoke"}

    # What only the platform does is in the new org's trail, with the platform as its actor.
    # The trail is written from the AUDIT stream, after the answer: wait for it as for the others.
    def org_created() -> list[dict[str, Any]] | None:
        platform_items, _ = audit_of(stack, org, stack.admin_token)
        return [i for i in platform_items if i["request_id"] == flow.request_ids["org"]] or None

    created = wait_until(org_created, timeout=20, what="the org.create event in the new org's trail")
    assert [(i["action"], i["actor"]["type"]) for i in created] == [("org.create", "platform")]

    # No secret anywhere in the trail.
    for secret in (password, token["token"], owner, dev, viewer["key"], stack.admin_token):
        assert secret not in text
