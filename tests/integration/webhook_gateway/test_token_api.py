"""CI tokens: created by an admin, shown once, listed without the secret, revoked at once everywhere."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import asyncpg
import pytest

from services.webhook_gateway.domain.tokens import generate_token
from services.webhook_gateway.settings import Settings
from tests.integration.webhook_gateway.helpers import (
    COMPONENT_PATH,
    admin,
    component_info,
    create_token,
    fake_orchestrator,
    gateway_client,
)
from tests.support import bearer

STATUS_OF_NOTHING = "/v1/webhooks/deployments/dep_01hzzzzzzzzzzzzzzzzzzzzzzz"


async def _sql(settings: Settings, query: str, *args: object) -> None:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute(f"SET search_path = webhook_gateway{settings.schema_suffix}")
        await conn.execute(query, *args)
    finally:
        await conn.close()


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_token_is_shown_once_and_listed_without_the_secret(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        created = await create_token(client, settings, name="github", expires_in_days=30)
        token = created["token"]
        assert re.fullmatch(r"lfci_[0-9A-Za-z]{49}", token)
        assert created["token_prefix"] == token[:12]
        assert created["id"].startswith("tok_")
        assert created["name"] == "github"
        assert created["expires_at"] is not None

        second = await create_token(client, settings)  # many tokens per component; body fields optional
        assert second["token"] != token
        assert second["expires_at"] is None

        resp = await client.get(f"{COMPONENT_PATH}/api/tokens", headers=admin(settings))
        assert resp.status == 200
        text = await resp.text()
        assert token not in text
        assert second["token"] not in text
        items = (await resp.json())["items"]
        assert {i["id"] for i in items} == {created["id"], second["id"]}
        first = next(i for i in items if i["id"] == created["id"])
        assert first["token_prefix"] == created["token_prefix"]
        assert "token" not in first
        assert first["revoked_at"] is None

        # The token works and its use is recorded.
        resp = await client.get(STATUS_OF_NOTHING, headers=bearer(token))
        assert resp.status == 404
        items = (await (await client.get(f"{COMPONENT_PATH}/api/tokens", headers=admin(settings))).json())[
            "items"
        ]
        assert next(i for i in items if i["id"] == created["id"])["last_used_at"] is not None

    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert token not in logged
    assert second["token"] not in logged
    assert created["token_prefix"] in logged


async def test_admin_token_is_required_and_component_must_exist(settings: Settings) -> None:
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        resp = await client.post(f"{COMPONENT_PATH}/api/tokens", json={})
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
        resp = await client.get(f"{COMPONENT_PATH}/api/tokens", headers=bearer("wrong"))
        assert resp.status == 401
        resp = await client.post(f"{COMPONENT_PATH}/nope/tokens", json={}, headers=admin(settings))
        assert resp.status == 404
        resp = await client.post(f"{COMPONENT_PATH}/Bad_Name/tokens", json={}, headers=admin(settings))
        assert resp.status == 404
        resp = await client.post(
            f"{COMPONENT_PATH}/api/tokens", json={"expires_in_days": 0}, headers=admin(settings)
        )
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["field"] == "expires_in_days"


async def test_a_nul_character_in_a_token_name_is_a_422_not_a_500(settings: Settings) -> None:
    """PostgreSQL refuses U+0000 in text: the gateway must refuse it first, naming the field."""
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        for body in ({"name": "ci\u0000bot"}, {"name": "ok", "\u0000": 1}):
            resp = await client.post(f"{COMPONENT_PATH}/api/tokens", json=body, headers=admin(settings))
            assert resp.status == 422, await resp.text()
            assert "NUL" in (await resp.json())["detail"]
        resp = await client.get(f"{COMPONENT_PATH}/api/tokens", headers=admin(settings))
        assert (await resp.json())["items"] == []


async def test_orchestrator_down_is_503_with_retry_after(settings: Settings) -> None:
    async with gateway_client(settings) as client:  # nobody answers rpc_component_get
        resp = await client.post(f"{COMPONENT_PATH}/api/tokens", json={}, headers=admin(settings))
        assert resp.status == 503
        assert resp.headers["Retry-After"]


async def test_revoked_token_stops_at_once_on_another_replica(settings: Settings) -> None:
    async with (
        fake_orchestrator(settings) as orch,
        gateway_client(settings) as first,
        gateway_client(settings) as second,
    ):
        orch.add(component_info("api"))
        created = await create_token(first, settings)
        token = created["token"]
        # Both replicas have validated (and cached) the token.
        for replica in (first, second):
            for _ in range(2):
                assert (await replica.get(STATUS_OF_NOTHING, headers=bearer(token))).status == 404

        resp = await first.delete(f"{COMPONENT_PATH}/api/tokens/{created['id']}", headers=admin(settings))
        assert resp.status == 204

        resp = await second.get(STATUS_OF_NOTHING, headers=bearer(token))
        assert resp.status == 401
        assert "revoked" in (await resp.json())["detail"]
        resp = await first.post("/v1/webhooks/deploy", json={"tag": "1.0"}, headers=bearer(token))
        assert resp.status == 401

        items = (await (await first.get(f"{COMPONENT_PATH}/api/tokens", headers=admin(settings))).json())[
            "items"
        ]
        assert items[0]["revoked_at"] is not None
        # Revoking again is fine; an unknown id or another component's token is a 404.
        assert (
            await first.delete(f"{COMPONENT_PATH}/api/tokens/{created['id']}", headers=admin(settings))
        ).status == 204
        assert (
            await first.delete(f"{COMPONENT_PATH}/api/tokens/tok_nope", headers=admin(settings))
        ).status == 404


async def test_another_components_token_cannot_be_managed_or_used_for_it(settings: Settings) -> None:
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        orch.add(component_info("web"))
        api_token = await create_token(client, settings, "api")
        resp = await client.delete(f"{COMPONENT_PATH}/web/tokens/{api_token['id']}", headers=admin(settings))
        assert resp.status == 404
        items = (await (await client.get(f"{COMPONENT_PATH}/web/tokens", headers=admin(settings))).json())[
            "items"
        ]
        assert items == []
        # The api token cannot deploy web's image.
        resp = await client.post(
            "/v1/webhooks/deploy", json={"image": "ghcr.io/acme/web:1.0"}, headers=bearer(api_token["token"])
        )
        assert resp.status == 403


async def test_expired_token_is_refused(settings: Settings) -> None:
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        created = await create_token(client, settings, expires_in_days=1)
        await _sql(
            settings,
            "UPDATE ci_tokens SET expires_at = now() - $2::interval WHERE id = $1",
            created["id"],
            timedelta(minutes=1),
        )
        resp = await client.get(STATUS_OF_NOTHING, headers=bearer(created["token"]))
        assert resp.status == 401
        assert "expired" in (await resp.json())["detail"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_malformed_and_unknown_tokens(settings: Settings) -> None:
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        token = (await create_token(client, settings))["token"]
        typo = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]

        before = _metric(
            await (await client.get("/metrics")).text(), "landfall_gateway_token_db_lookups_total"
        )
        for bad in (typo, "lfci_short", "ghp_" + token[4:], ""):
            resp = await client.post("/v1/webhooks/deploy", json={"tag": "1.0"}, headers=bearer(bad))
            assert resp.status == 401, bad
            assert resp.content_type == "application/problem+json"
        resp = await client.post("/v1/webhooks/deploy", json={"tag": "1.0"})
        assert resp.status == 401
        after = _metric(
            await (await client.get("/metrics")).text(), "landfall_gateway_token_db_lookups_total"
        )
        assert after == before, "a token with a bad checksum must be refused without a database lookup"

        # A well-formed token nobody issued needs a lookup, and is refused.
        resp = await client.get(STATUS_OF_NOTHING, headers=bearer(generate_token()))
        assert resp.status == 401
        assert "unknown" in (await resp.json())["detail"]
        final = _metric(
            await (await client.get("/metrics")).text(), "landfall_gateway_token_db_lookups_total"
        )
        assert final == after + 1


async def test_health_readiness_and_openapi(settings: Settings) -> None:
    async with gateway_client(settings) as client:
        assert (await client.get("/healthz")).status == 200
        resp = await client.get("/readyz")
        ready = await resp.json()
        assert resp.status == 200, ready
        assert set(ready["checks"]) == {"nats", "postgres"}  # Vault only matters to signed components
        doc = await (await client.get("/openapi.json")).json()
        paths = doc["paths"]
        component = "/v1/orgs/{org}/projects/{project}/components/{component}"
        assert {"post", "get"} <= paths[f"{component}/tokens"].keys()
        assert "delete" in paths[f"{component}/tokens/{{id}}"]
        assert {"post", "get", "delete"} <= paths[f"{component}/signing-secret"].keys()
        assert "get" in paths[f"{component}/ci-snippets"]
        deploy = paths["/v1/webhooks/deploy"]["post"]
        assert deploy["security"] == [{"ciToken": []}]
        assert {"202", "401", "413", "415", "422", "429", "503"} <= deploy["responses"].keys()
        assert "wait" in {p["name"] for p in paths["/v1/webhooks/deployments/{id}"]["get"]["parameters"]}
