"""Who may call the registries API: org API keys with roles, checked through the bus, and the audit trail.

The keys are the orchestrator's (faked here by `FakeKeys` on the real NATS). What
a user notices: a viewer reads and cannot change (403 naming the owner role), an
owner changes, another org's key finds nothing (404, as for an unknown registry),
a revoked key stops working on the very next request, and a key that cannot be
checked because NATS is down is a 503 with Retry-After, never trusted from the
cache. Every change and every refusal of a known key is an audit event.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from libs.contracts.tokens import API_KEY, CI_TOKEN
from libs.devstack.servers import NatsServer
from services.credentials.settings import Settings
from tests.integration.credentials.helpers import ORG, OTHER_ORG, REGISTRIES, Harness, running
from tests.support import bearer, settings_from

ANONYMOUS_GHCR: dict[str, Any] = {"display_name": "ghcr", "auth": {"type": "anonymous", "host": "ghcr.io"}}


async def test_a_viewer_reads_and_only_an_owner_changes(svc: Harness) -> None:
    created = await svc.create(ANONYMOUS_GHCR)
    path = f"{REGISTRIES}/{created['id']}"
    viewer, developer, owner = (svc.keys.add(ORG, role) for role in ("viewer", "developer", "owner"))

    for key in (viewer, developer, owner):
        assert (await svc.client.get(REGISTRIES, headers=bearer(key))).status == 200
        assert (await svc.client.get(path, headers=bearer(key))).status == 200
    for key in (viewer, developer):
        changes = [
            svc.client.post(REGISTRIES, json={**ANONYMOUS_GHCR, "display_name": "x"}, headers=bearer(key)),
            svc.client.patch(path, json={"display_name": "y"}, headers=bearer(key)),
            svc.client.post(path + "/test", headers=bearer(key)),
            svc.client.delete(path, headers=bearer(key)),
        ]
        for change in changes:
            resp = await change
            assert resp.status == 403
            assert "owner role" in (await resp.json())["detail"]

    resp = await svc.client.patch(path, json={"display_name": "mine"}, headers=bearer(owner))
    assert resp.status == 200, await resp.text()
    assert (await svc.client.delete(path, headers=bearer(owner))).status == 204

    events = await svc.audit.wait_for(1 + 8 + 2)
    refused = [e for e in events if e.outcome == "refused"]
    assert len(refused) == 8
    assert {(e.status, e.org, e.actor.type) for e in refused} == {(403, ORG, "api_key")}
    done = [(e.action, e.actor.type, e.actor.id) for e in events if e.outcome == "ok"]
    owner_id = svc.keys.info(owner).id
    assert done == [
        ("registry.create", "platform", None),
        ("registry.update", "api_key", owner_id),
        ("registry.delete", "api_key", owner_id),
    ]
    assert {e.actor.name for e in events if e.actor.id == owner_id} == {f"owner of {ORG}"}


async def test_another_orgs_key_finds_nothing(svc: Harness) -> None:
    created = await svc.create(ANONYMOUS_GHCR)
    theirs = svc.keys.add(OTHER_ORG, "owner")
    for resp in (
        await svc.client.get(REGISTRIES, headers=bearer(theirs)),
        await svc.client.get(f"{REGISTRIES}/{created['id']}", headers=bearer(theirs)),
        await svc.client.delete(f"{REGISTRIES}/{created['id']}", headers=bearer(theirs)),
        await svc.client.post(REGISTRIES, json=ANONYMOUS_GHCR, headers=bearer(theirs)),
    ):
        assert resp.status == 404
        assert repr(ORG) in (await resp.json())["detail"]
    # ... exactly as for an org that does not exist, and its own org's registries are its own.
    assert (await svc.client.get(f"/v1/orgs/{OTHER_ORG}/registries", headers=bearer(theirs))).status == 200
    assert (await svc.client.get(f"{REGISTRIES}/{created['id']}", headers=svc.headers)).status == 200
    # The probes are in the prober's own trail, not in the org it probed.
    events = await svc.audit.wait_for(1 + 4)
    assert {(e.org, e.outcome, e.status) for e in events[1:]} == {(OTHER_ORG, "refused", 404)}


async def test_a_revoked_key_fails_on_the_next_request(svc: Harness) -> None:
    key = svc.keys.add(ORG, "owner")
    assert (await svc.client.get(REGISTRIES, headers=bearer(key))).status == 200
    assert (await svc.client.get(REGISTRIES, headers=bearer(key))).status == 200
    assert svc.keys.lookups == 1  # the second request was served from the cache

    await svc.keys.revoke(key)
    resp = await svc.client.get(REGISTRIES, headers=bearer(key))
    assert resp.status == 401
    assert "revoked" in (await resp.json())["detail"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    events = await svc.audit.wait_for(1)
    assert [(e.outcome, e.status, e.actor.id) for e in events] == [("refused", 401, svc.keys.info(key).id)]


async def test_expired_unknown_and_ci_credentials_are_refused(svc: Harness) -> None:
    expired = await svc.client.get(REGISTRIES, headers=bearer(svc.keys.add(ORG, "owner", expired=True)))
    assert expired.status == 401
    assert "expired" in (await expired.json())["detail"]
    unknown = await svc.client.get(REGISTRIES, headers=bearer(API_KEY.generate()))
    assert unknown.status == 401
    assert "unknown" in (await unknown.json())["detail"]
    ci = await svc.client.get(REGISTRIES, headers=bearer(CI_TOKEN.generate()))
    assert ci.status == 403
    assert "webhook" in (await ci.json())["detail"]
    assert (await svc.client.get(REGISTRIES)).status == 401


async def test_a_key_that_cannot_be_checked_is_a_503_not_a_stale_yes(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    server = NatsServer(tmp_path / "nats")
    await asyncio.to_thread(server.start)
    try:
        async with running(settings_from(Settings, base_env, nats_url=server.url)) as svc:
            key = svc.keys.add(ORG, "viewer")
            assert (await svc.client.get(REGISTRIES, headers=bearer(key))).status == 200

            await asyncio.to_thread(server.stop)
            resp = await svc.client.get(REGISTRIES, headers=bearer(key))
            assert resp.status == 503, await resp.text()
            assert int(resp.headers["Retry-After"]) >= 1
            assert resp.headers["X-Request-Id"] == (await resp.json())["request_id"]
            # The platform token needs no look-up: PostgreSQL alone answers it.
            assert (await svc.client.get(REGISTRIES, headers=svc.headers)).status == 200
    finally:
        await asyncio.to_thread(server.stop)


async def test_openapi_says_who_may_call_each_operation(svc: Harness) -> None:
    paths = (await (await svc.client.get("/openapi.json")).json())["paths"]
    found = {
        (method.upper(), path): (op["x-landfall-auth"], op["x-landfall-action"])
        for path, ops in paths.items()
        if path.startswith("/v1/")
        for method, op in ops.items()
    }
    assert found == {
        ("POST", REGISTRIES.replace(ORG, "{org}")): ("owner", "registry.create"),
        ("GET", "/v1/orgs/{org}/registries"): ("viewer", "registry.list"),
        ("GET", "/v1/orgs/{org}/registries/{id}"): ("viewer", "registry.get"),
        ("PATCH", "/v1/orgs/{org}/registries/{id}"): ("owner", "registry.update"),
        ("DELETE", "/v1/orgs/{org}/registries/{id}"): ("owner", "registry.delete"),
        ("POST", "/v1/orgs/{org}/registries/{id}/test"): ("owner", "registry.test"),
    }


async def test_the_request_id_is_kept_and_reaches_the_audit_event(svc: Harness) -> None:
    resp = await svc.client.post(
        REGISTRIES, json=ANONYMOUS_GHCR, headers={**svc.headers, "X-Request-Id": "ci-run-42.step-3"}
    )
    assert resp.status == 201
    assert resp.headers["X-Request-Id"] == "ci-run-42.step-3"
    [event] = await svc.audit.wait_for(1)
    assert event.request_id == "ci-run-42.step-3"
