"""The guard every route passes: who may call, what is refused how, and what the audit trail gets.

A real aiohttp app with the shared app factory; the key look-up is a dict (our own port), so the
rules of API.md's "Identity and roles" are checked here once, for every service that uses them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from libs.contracts.identity import Actor, ApiKeyInfo, ApiKeyRevoked, Outcome, Role
from libs.contracts.tokens import API_KEY, CI_TOKEN, token_hash, token_prefix
from libs.runtime.access import AUDIT, AUTHENTICATOR, Authenticator, KeyDirectory, caller
from libs.runtime.audit import AuditEntry
from libs.runtime.http import create_base_app, json_response

ADMIN = "admin-token-for-tests"
Client = TestClient[web.Request, web.Application]


class Recorder:
    """Stands in for `AuditLog` (same `record` signature): what the guard asked to record."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def record(self, **entry: Unpack[AuditEntry]) -> None:
        self.items.append({"detail": "", **entry})


class Keys:
    def __init__(self) -> None:
        self.by_digest: dict[bytes, ApiKeyInfo] = {}
        self.lookups = 0

    def add(self, org: str, role: Role, *, expired: bool = False) -> str:
        key = API_KEY.generate()
        self.by_digest[token_hash(key)] = ApiKeyInfo(
            id=f"key_{len(self.by_digest)}",
            org=org,
            name=f"{org}-{role}",
            role=role,
            key_prefix=token_prefix(key),
            expires_at=datetime.now(UTC) - timedelta(days=1) if expired else None,
        )
        return key

    async def lookup(self, digest: bytes) -> ApiKeyInfo | None:
        self.lookups += 1
        return self.by_digest.get(digest)


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
async def setup(keys: Keys) -> AsyncIterator[tuple[Client, Recorder, KeyDirectory]]:
    app, api = create_base_app(service="test", version="0", admin_token=SecretStr(ADMIN))
    directory = KeyDirectory(lookup=keys.lookup, broadcasts=None, epoch=lambda: 0)
    app[AUTHENTICATOR] = Authenticator(admin_token=SecretStr(ADMIN), keys=directory)
    recorder = Recorder()
    app[AUDIT] = recorder

    async def read(request: web.Request) -> web.Response:
        who = caller(request)
        return json_response({"kind": who.kind, "scope": who.scope})

    async def change(_: web.Request) -> web.Response:
        return json_response({}, status=201)

    api.route("GET", "/v1/orgs/{org}/things", read, summary="read", auth="viewer")
    api.route(
        "POST", "/v1/orgs/{org}/things", change, summary="change", auth="developer", action="thing.create"
    )
    api.route("DELETE", "/v1/orgs/{org}/keys", change, summary="owners", auth="owner", action="key.delete")
    api.route("POST", "/v1/orgs", change, summary="platform", auth="platform", action="org.create")
    api.route("GET", "/v1/things/{id}", read, summary="no org in the path", auth="viewer")
    async with TestClient(TestServer(app)) as client:
        yield client, recorder, directory


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Request-Id": "req-42"}


async def test_each_role_does_what_the_table_allows_in_its_own_org(
    setup: tuple[Client, Recorder, KeyDirectory], keys: Keys
) -> None:
    client, _, _ = setup
    viewer, developer, owner = keys.add("a", "viewer"), keys.add("a", "developer"), keys.add("a", "owner")
    assert (await client.get("/v1/orgs/a/things", headers=bearer(viewer))).status == 200
    denied = await client.post("/v1/orgs/a/things", headers=bearer(viewer))
    assert denied.status == 403
    assert "developer role" in (await denied.json())["detail"]
    assert (await client.post("/v1/orgs/a/things", headers=bearer(developer))).status == 201
    assert (await client.delete("/v1/orgs/a/keys", headers=bearer(developer))).status == 403
    assert (await client.delete("/v1/orgs/a/keys", headers=bearer(owner))).status == 201
    assert (await client.post("/v1/orgs", headers=bearer(owner))).status == 403
    assert (await client.post("/v1/orgs", headers=bearer(ADMIN))).status == 201


async def test_another_orgs_path_is_404_even_for_an_owner_and_before_the_role(
    setup: tuple[Client, Recorder, KeyDirectory], keys: Keys
) -> None:
    client, recorder, _ = setup
    owner_b, viewer_b = keys.add("b", "owner"), keys.add("b", "viewer")
    for key in (owner_b, viewer_b):
        resp = await client.post("/v1/orgs/a/things", headers=bearer(key))
        assert resp.status == 404
        assert (await resp.json())["type"].endswith("/not-found")
    assert {(i["org"], i["outcome"], i["status"]) for i in recorder.items} == {("b", "refused", 404)}


async def test_missing_unknown_revoked_and_expired_keys_are_401_and_ci_tokens_403(
    setup: tuple[Client, Recorder, KeyDirectory], keys: Keys
) -> None:
    client, recorder, directory = setup
    assert (await client.get("/v1/orgs/a/things")).status == 401
    assert (await client.get("/v1/orgs/a/things", headers=bearer(API_KEY.generate()))).status == 401
    assert (await client.get("/v1/orgs/a/things", headers=bearer("lfk_typo"))).status == 401
    assert (
        await client.get("/v1/orgs/a/things", headers=bearer(keys.add("a", "owner", expired=True)))
    ).status == 401
    ci = await client.get("/v1/orgs/a/things", headers=bearer(CI_TOKEN.generate()))
    assert ci.status == 403
    assert "webhook" in (await ci.json())["detail"]
    key = keys.add("a", "owner")
    assert (await client.get("/v1/orgs/a/things", headers=bearer(key))).status == 200
    info = keys.by_digest[token_hash(key)]
    keys.by_digest[token_hash(key)] = info.model_copy(update={"revoked": True})
    assert (await client.get("/v1/orgs/a/things", headers=bearer(key))).status == 200  # cached...
    directory.revoked(ApiKeyRevoked(key_id=info.id, org="a"))  # ...until the broadcast
    resp = await client.get("/v1/orgs/a/things", headers=bearer(key))
    assert resp.status == 401
    assert "revoked" in (await resp.json())["detail"]
    refused = [(i["actor"].type, i["status"]) for i in recorder.items]
    assert refused == [("api_key", 401), ("api_key", 401)]  # expired and revoked: known keys only


async def test_a_cached_key_costs_no_lookup_and_platform_sees_every_org(
    setup: tuple[Client, Recorder, KeyDirectory], keys: Keys
) -> None:
    client, _, _ = setup
    key = keys.add("a", "viewer")
    for _ in range(3):
        body = await (await client.get("/v1/things/dep_1", headers=bearer(key))).json()
        assert body == {"kind": "api_key", "scope": "a"}
    assert keys.lookups == 1
    body = await (await client.get("/v1/things/dep_1", headers=bearer(ADMIN))).json()
    assert body == {"kind": "platform", "scope": None}


async def test_changes_are_audited_with_actor_and_request_id_and_answers_carry_it(
    setup: tuple[Client, Recorder, KeyDirectory], keys: Keys
) -> None:
    client, recorder, _ = setup
    key = keys.add("a", "developer")
    resp = await client.post("/v1/orgs/a/things", headers=bearer(key))
    assert resp.headers["X-Request-Id"] == "req-42"
    await client.get("/v1/orgs/a/things", headers=bearer(key))  # a read is not a change
    problem = await client.delete("/v1/orgs/a/keys", headers={"Authorization": f"Bearer {key}"})
    generated = problem.headers["X-Request-Id"]
    assert (await problem.json())["request_id"] == generated
    ok: Outcome = "ok"
    assert recorder.items[0] == {
        "org": "a",
        "actor": Actor(type="api_key", id="key_0", name="a-developer"),
        "action": "thing.create",
        "target": "/v1/orgs/a/things",
        "outcome": ok,
        "status": 201,
        "request_id": "req-42",
        "detail": "",
    }
    assert [(i["action"], i["outcome"], i["request_id"]) for i in recorder.items[1:]] == [
        ("key.delete", "refused", generated)
    ]
    assert key not in repr(recorder.items)
