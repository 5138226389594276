"""Who may manage CI tokens and signing secrets, and what the audit trail learns from the gateway.

Org API keys are the orchestrator's (faked by `FakeKeys` on the real NATS). What a
user notices: a viewer reads a component's tokens, signing state and snippets but
cannot change them (403 naming the developer role); a developer can; another
org's key finds nothing (404); a revoked key fails on the very next request on
every replica; NATS being away makes a key a 503 with Retry-After. The webhook's
deploy, a refused image and a revoked CI token are audit events with the
`ci_token` actor, and no event holds a CI token, a signing secret or a key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from libs.contracts.identity import AuditEvent
from services.webhook_gateway.settings import Settings
from tests.integration.webhook_gateway.helpers import (
    COMPONENT_PATH,
    ORG,
    Env,
    admin,
    component_info,
    create_token,
    fake_orchestrator,
    gateway_client,
    private_nats,
)
from tests.support import bearer, settings_from

API = f"{COMPONENT_PATH}/api"
OTHER_ORG = "globex"


async def test_a_viewer_reads_and_a_developer_changes(env: Env) -> None:
    keys = env.orch.keys
    viewer, developer = keys.add(ORG, "viewer"), keys.add(ORG, "developer")
    token_id = (await (await env.client.get(API + "/tokens", headers=admin(env.settings))).json())["items"][
        0
    ]["id"]
    for path in ("/tokens", "/signing-secret", "/ci-snippets"):
        resp = await env.client.get(API + path, headers=bearer(viewer))
        assert resp.status == 200, (path, await resp.text())
    for method, path in (
        ("POST", "/tokens"),
        ("DELETE", f"/tokens/{token_id}"),
        ("POST", "/signing-secret"),
        ("DELETE", "/signing-secret"),
    ):
        resp = await env.client.request(method, API + path, headers=bearer(viewer))
        assert resp.status == 403, (method, path)
        assert "developer role" in (await resp.json())["detail"]

    created = await env.client.post(API + "/tokens", json={"name": "deploy-bot"}, headers=bearer(developer))
    assert created.status == 201
    new = await created.json()
    assert (await env.client.post(API + "/signing-secret", headers=bearer(developer))).status == 201
    assert (await env.client.delete(API + "/signing-secret", headers=bearer(developer))).status == 204
    assert (await env.client.delete(f"{API}/tokens/{new['id']}", headers=bearer(developer))).status == 204

    events = await env.orch.audit.wait_for(1 + 4 + 4)
    ok = [(e.action, e.target, e.actor.id) for e in events if e.outcome == "ok"]
    developer_id = keys.info(developer).id
    assert ok[1:] == [
        ("citoken.create", new["id"], developer_id),
        ("signing_secret.create", API + "/signing-secret", developer_id),
        ("signing_secret.delete", API + "/signing-secret", developer_id),
        ("citoken.revoke", new["id"], developer_id),
    ]
    assert ok[0][:2] == ("citoken.create", token_id)  # the env's own token, by the platform
    refused = [e for e in events if e.outcome == "refused"]
    assert {(e.status, e.actor.type, e.actor.id) for e in refused} == {(403, "api_key", keys.info(viewer).id)}


async def test_another_orgs_key_finds_nothing(env: Env) -> None:
    theirs = env.orch.keys.add(OTHER_ORG, "owner")
    token_id = (await (await env.client.get(API + "/tokens", headers=admin(env.settings))).json())["items"][
        0
    ]["id"]
    for method, path in (
        ("GET", "/tokens"),
        ("POST", "/tokens"),
        ("DELETE", f"/tokens/{token_id}"),
        ("GET", "/signing-secret"),
        ("POST", "/signing-secret"),
        ("GET", "/ci-snippets"),
    ):
        resp = await env.client.request(method, API + path, headers=bearer(theirs))
        assert resp.status == 404, (method, path)
    # The token is untouched and still deploys.
    assert (await env.send({"tag": "1.0"}))[0] == 202


async def test_a_revoked_key_fails_at_once_on_every_replica(env: Env) -> None:
    key = env.orch.keys.add(ORG, "developer")
    async with gateway_client(env.settings) as second:
        for replica in (env.client, second):
            for _ in range(2):
                assert (await replica.get(API + "/tokens", headers=bearer(key))).status == 200
        assert env.orch.keys.lookups == 2  # once per replica; the second request was cached

        await env.orch.keys.revoke(key)
        for replica in (env.client, second):
            resp = await replica.get(API + "/tokens", headers=bearer(key))
            assert resp.status == 401
            assert "revoked" in (await resp.json())["detail"]


async def test_an_expired_or_unknown_key_is_401(env: Env) -> None:
    expired = await env.client.get(
        API + "/tokens", headers=bearer(env.orch.keys.add(ORG, "owner", expired=True))
    )
    assert expired.status == 401
    assert "expired" in (await expired.json())["detail"]
    assert (await env.client.get(API + "/tokens", headers=bearer("lfk_" + "x" * 40))).status == 401


async def test_a_key_that_cannot_be_checked_is_a_503(base_env: dict[str, str], tmp_path: Path) -> None:
    async with private_nats(tmp_path / "nats") as server:
        settings = settings_from(Settings, base_env, nats_url=server.url)
        async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
            orch.add(component_info("api"))
            key = orch.keys.add(ORG, "viewer")
            assert (await client.get(API + "/tokens", headers=bearer(key))).status == 200

            await asyncio.to_thread(server.stop)
            resp = await client.get(API + "/tokens", headers=bearer(key))
            assert resp.status == 503, await resp.text()
            assert int(resp.headers["Retry-After"]) >= 1


def _webhook_events(events: list[AuditEvent]) -> list[AuditEvent]:
    return [e for e in events if e.action == "deployment.create"]


async def test_the_webhook_is_audited_as_the_ci_token(env: Env) -> None:
    token = (await (await env.client.get(API + "/tokens", headers=admin(env.settings))).json())["items"][0]
    deployment_id = await env.deploy("1.0")
    status, _ = await env.send({"image": "docker.io/evil/api:1.0"})
    assert status == 403

    events = _webhook_events(await env.orch.audit.wait_for(3))
    assert [(e.outcome, e.status, e.org) for e in events] == [("ok", 202, ORG), ("refused", 403, ORG)]
    assert events[0].target == deployment_id
    for event in events:
        assert event.actor.type == "ci_token"
        assert event.actor.id == token["id"]
        assert event.actor.name == token["token_prefix"]  # the token has no name
        assert event.actor.component == "shop/api"
        assert event.service == env.settings.service_name
    assert "is not this component's repository" in events[1].detail


async def test_a_known_but_revoked_ci_token_is_audited_and_garbage_is_not(env: Env) -> None:
    named = await create_token(env.client, env.settings, name="release-bot")
    resp = await env.client.delete(f"{API}/tokens/{named['id']}", headers=admin(env.settings))
    assert resp.status == 204
    resp = await env.client.post("/v1/webhooks/deploy", json={"tag": "1.0"}, headers=bearer(named["token"]))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    garbage = await env.client.post("/v1/webhooks/deploy", json={"tag": "1.0"}, headers=bearer("lfci_nope"))
    assert garbage.status == 401

    await env.new_secret()
    assert (await env.send({"tag": "1.0"}))[0] == 401  # unsigned, from a token we issued

    events = _webhook_events(await env.orch.audit.quiet())
    assert [(e.outcome, e.status, e.actor.id) for e in events] == [
        ("refused", 401, named["id"]),
        ("refused", 401, env.orch.audit.of("citoken.create")[0].target),
    ]
    assert events[0].actor.name == "release-bot"
    assert "signature" in events[1].detail


async def test_no_secret_in_any_audit_event(env: Env) -> None:
    key = env.orch.keys.add(ORG, "owner")
    made = await env.client.post(API + "/tokens", json={"name": "n"}, headers=bearer(key))
    ci_token = (await made.json())["token"]
    signing = await env.client.post(API + "/signing-secret", headers=bearer(key))
    secret = (await signing.json())["secret"]
    await env.client.delete(API + "/signing-secret", headers=bearer(key))
    resp = await env.client.post("/v1/webhooks/deploy", json={"tag": "2.0"}, headers=bearer(ci_token))
    assert resp.status == 202
    await env.client.get(API + "/tokens", headers=bearer(env.token))  # a CI token refused: 403

    events = await env.orch.audit.quiet()
    assert len(events) == 5  # two tokens made, the signing secret made and deleted, the deploy
    published = b"\n".join(env.orch.audit.raw)
    admin_token = env.settings.admin_token.get_secret_value()
    for value in (ci_token, env.token, secret, secret.removeprefix("whsec_"), key, admin_token):
        assert value.encode() not in published


async def test_openapi_says_who_may_call_each_operation(env: Env) -> None:
    paths = (await (await env.client.get("/openapi.json")).json())["paths"]
    found = {
        (method.upper(), path.removeprefix("/v1/orgs/{org}/projects/{project}/components/{component}")): (
            op["x-landfall-auth"],
            op["x-landfall-action"],
        )
        for path, ops in paths.items()
        if path.startswith("/v1/")
        for method, op in ops.items()
    }
    assert found == {
        ("POST", "/tokens"): ("developer", "citoken.create"),
        ("GET", "/tokens"): ("viewer", "citoken.list"),
        ("DELETE", "/tokens/{id}"): ("developer", "citoken.revoke"),
        ("POST", "/signing-secret"): ("developer", "signing_secret.create"),
        ("GET", "/signing-secret"): ("viewer", "signing_secret.get"),
        ("DELETE", "/signing-secret"): ("developer", "signing_secret.delete"),
        ("GET", "/ci-snippets"): ("viewer", "ci_snippets.get"),
        ("POST", "/v1/webhooks/deploy"): ("ci", "deployment.create"),
        ("GET", "/v1/webhooks/deployments/{id}"): ("ci", "deployment.get"),
    }
    assert paths["/v1/webhooks/deploy"]["post"]["security"] == [{"ciToken": []}]
