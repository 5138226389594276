"""The audit trail the orchestrator records from the AUDIT stream and serves at /v1/orgs/{org}/audit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from libs.contracts.identity import Actor, AuditEvent
from libs.contracts.ids import new_id
from libs.contracts.subjects import Subjects
from libs.runtime.bus import Bus, connect
from services.orchestrator.settings import Settings
from tests.integration.orchestrator.helpers import Harness, running_orchestrator
from tests.support import eventually, settings_from


def event(org: str, action: str = "registry.create", **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "id": new_id("aud"),
        "time": datetime.now(UTC),
        "org": org,
        "service": "credentials",
        "actor": Actor(type="api_key", id="key_x", name="laptop"),
        "action": action,
        "target": "reg_x",
        "outcome": "ok",
        "status": 201,
        "request_id": "req-1",
        **fields,
    }
    return AuditEvent(**values)


def events(org: str, count: int, **fields: Any) -> list[AuditEvent]:
    """`count` events, oldest first as the trail orders them: by id (time-ordered by the millisecond;
    within one millisecond, by the random tail), so no sleeping between them."""
    return sorted((event(org, target=f"reg_{n}", **fields) for n in range(count)), key=lambda e: e.id)


async def test_changes_and_refusals_are_in_the_trail_with_their_actor(orch: Harness) -> None:
    world = await orch.provision(org="acme")
    owner = await orch.api_key("acme", "owner", name="owner-laptop")
    viewer = await orch.api_key("acme", "viewer", name="reader")
    path = f"/v1/orgs/{world.org}/projects"

    status, _, headers = await _post(orch, path, {"name": "web"}, owner["key"], request_id="the-request")
    assert status == 201
    assert headers["X-Request-Id"] == "the-request"
    item = await orch.audited("acme", "project.create", action="project.create", target=f"{path}/web")
    assert item["actor"] == {"type": "api_key", "id": owner["id"], "name": "owner-laptop", "component": None}
    assert item["outcome"] == "ok"
    assert (item["status"], item["request_id"], item["service"]) == (201, "the-request", "orchestrator")

    status, problem, _ = await orch.call("POST", path, {"name": "nope"}, token=viewer["key"])
    assert status == 403, problem
    refused = await orch.audited("acme", "the viewer's refusal", outcome="refused", status=403)
    assert refused["actor"]["id"] == viewer["id"]
    assert refused["action"] == "project.create"
    assert "developer" in refused["detail"]

    enrolled = await orch.audited("acme", "the enrollment", action="dataplane.enroll")
    assert enrolled["actor"]["type"] == "agent"
    assert enrolled["actor"]["id"] == world.dataplane_id
    created_org = await orch.audited("acme", "the org's creation", action="org.create")
    assert created_org["actor"]["type"] == "platform"
    key_made = await orch.audited("acme", "the key's creation", action="apikey.create", target=owner["id"])
    assert key_made["outcome"] == "ok"

    trail = str(await orch.audit("acme", "?limit=200"))
    for secret in (owner["key"], viewer["key"], world.enrollment_token, orch.admin_token):
        assert secret not in trail
    # a viewer may read the trail; filters by action and by actor
    by_action = await orch.audit("acme", "?action=project.create", token=viewer["key"])
    assert {i["action"] for i in by_action["items"]} == {"project.create"}
    assert len(by_action["items"]) == 3  # provision's project, the owner's, the viewer's refusal
    by_actor = await orch.audit("acme", f"?actor_id={viewer['id']}")
    assert [i["outcome"] for i in by_actor["items"]] == ["refused"]


async def _post(
    orch: Harness, path: str, body: Any, token: str, *, request_id: str
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}", "X-Request-Id": request_id}
    resp = await orch.client.post(path, json=body, headers=headers)
    return resp.status, await resp.json(), {"X-Request-Id": resp.headers.get("X-Request-Id", "")}


async def test_pages_newest_first_with_a_cursor(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    sent = events("acme", 7)
    for e in sent:
        await orch.bus.publish_durable(orch.subjects.audit("acme"), e, msg_id=e.id)
    await orch.audited("acme", "the last event", id=sent[-1].id)
    await orch.audited("acme", "the org's creation", action="org.create")

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await orch.audit("acme", query)
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 8 == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert [e.id for e in reversed(sent)] == [i for i in seen if i in {e.id for e in sent}]

    for bad in (
        "?cursor=garbage",
        "?cursor=" + "A" * 100,
        "?cursor=%00",
        "?limit=0",
        "?limit=201",
        "?limit=x",
    ):
        status, problem, _ = await orch.call("GET", f"/v1/orgs/acme/audit{bad}")
        assert status == 422, (bad, problem)
    status, problem, _ = await orch.call("GET", "/v1/orgs/nope/audit")
    assert status == 404, problem


async def test_an_event_delivered_twice_is_recorded_once(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    once = event("acme", action="component.delete")
    for copy in ("first", "second"):  # two stream messages (another msg id) with the same event
        await orch.bus.publish_durable(orch.subjects.audit("acme"), once, msg_id=f"{once.id}-{copy}")
    await orch.audited("acme", "the event", action="component.delete")
    marker = event("acme", action="marker")
    await orch.bus.publish_durable(orch.subjects.audit("acme"), marker, msg_id=marker.id)
    await orch.audited("acme", "the marker", action="marker")
    items = (await orch.audit("acme", "?action=component.delete"))["items"]
    assert [i["id"] for i in items] == [once.id]


async def test_an_event_on_another_orgs_subject_is_dropped(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    await orch.ok("POST", "/v1/orgs", {"name": "beta"}, 201)
    forged = event("beta", action="forged")
    await orch.bus.publish_durable(orch.subjects.audit("acme"), forged, msg_id=forged.id)
    marker = event("beta", action="marker")
    await orch.bus.publish_durable(orch.subjects.audit("beta"), marker, msg_id=marker.id)
    await orch.audited("beta", "the marker", action="marker")
    assert (await orch.audit("beta", "?action=forged"))["items"] == []


async def test_events_sent_while_the_orchestrator_was_down_are_recorded_when_it_starts(
    base_env: dict[str, str],
) -> None:
    async with running_orchestrator(base_env) as orch:
        await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
        await orch.audited("acme", "the org's creation", action="org.create")
    # the orchestrator is down: "the credentials service" goes on recording
    settings = settings_from(Settings, base_env)
    nc = await connect(settings, name="credentials-test", wait_seconds=5)
    bus = Bus(nc, Subjects(settings.bus_prefix))
    missed = events("acme", 3, action="registry.update")
    try:
        for e in missed:
            await bus.publish_durable(bus.subjects.audit("acme"), e, msg_id=e.id)
    finally:
        await nc.close()
    async with running_orchestrator(base_env) as started:

        async def recorded() -> list[str] | None:
            items = (await started.audit("acme", "?action=registry.update"))["items"]
            return [i["id"] for i in items] if len(items) == 3 else None

        assert await eventually(recorded, what="the missed events") == [e.id for e in reversed(missed)]


async def test_an_event_with_a_nul_in_its_text_is_recorded_not_dropped(orch: Harness) -> None:
    # A refused request's path from hostile input (`%00`) reaches the trail as its target; PostgreSQL
    # text cannot hold NUL, and the consumer used to drop such an event after five failed inserts.
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    doc = json.loads(event("acme", action="project.create").model_dump_json())
    doc.update(target="/v1/orgs/acme/projects/a\x00b", detail="name a\x00b")
    doc["actor"]["name"] = "lap\x00top"
    raw = json.dumps(doc).encode()  # as a producer without the contract's cleaning would send it
    await orch.bus.js.publish(orch.subjects.audit("acme"), raw, headers={"Nats-Msg-Id": doc["id"]})
    item = await orch.audited("acme", "the hostile event", action="project.create")
    assert item["target"] == "/v1/orgs/acme/projects/a\ufffdb"
    assert item["detail"] == "name a\ufffdb"
    assert item["actor"]["name"] == "lap\ufffdtop"
