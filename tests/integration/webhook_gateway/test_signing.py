"""Signed webhooks (Standard Webhooks): per-component secret in Vault, checked on top of the CI token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid

import asyncpg
import hvac
import pytest

from services.webhook_gateway.settings import Settings
from tests.integration.webhook_gateway.helpers import COMPONENT_PATH, Env, admin, gateway_client
from tests.support import bearer, settings_from

SECRET_PATH = f"{COMPONENT_PATH}/api/signing-secret"


def signed_headers(
    secret: str, body: bytes, *, webhook_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """Written from the spec, independently of the gateway's own code."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }


BODY = json.dumps({"tag": "1.0"}).encode()


async def test_signatures_required_once_a_secret_exists(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert (await env.send_raw(BODY, {}))[0] == 202  # not required yet
    status = await (await env.client.get(SECRET_PATH, headers=admin(env.settings))).json()
    assert status == {"required": False, "created_at": None}

    secret = await env.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) >= 24
    status = await (await env.client.get(SECRET_PATH, headers=admin(env.settings))).json()
    assert status["required"] is True
    assert "secret" not in status

    code, problem = await env.send_raw(BODY, {})
    assert code == 401
    assert "webhook-signature" in problem["detail"]
    code, body = await env.send_raw(BODY, signed_headers(secret, BODY))
    assert code == 202, body

    # Several signatures (the sender rotating its secret): any valid one is enough.
    headers = signed_headers(secret, BODY)
    headers["webhook-signature"] = "v1,AAAA" + " " + headers["webhook-signature"]
    assert (await env.send_raw(BODY, headers))[0] == 202

    # The secret is in Vault at the documented path, and nowhere in the database or the logs.
    vault = hvac.Client(url=env.settings.vault_addr, token=env.settings.vault_token.get_secret_value())
    path = f"{env.settings.vault_prefix}/gateway/signing/acme/shop/api"
    stored = vault.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    assert secret in json.dumps(stored["data"]["data"])
    conn = await asyncpg.connect(env.settings.database_url.get_secret_value())
    try:
        dump = await conn.fetch(
            "SELECT to_jsonb(t)::text AS row FROM (SELECT * FROM "
            f"webhook_gateway{env.settings.schema_suffix}.signing_required) t"
        )
    finally:
        await conn.close()
    assert dump
    assert all(secret[6:] not in r["row"] for r in dump)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert secret[6:] not in logged


async def test_bad_signatures_are_401(env: Env) -> None:
    secret = await env.new_secret()
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    tampered = signed_headers(secret, BODY)
    for headers, body in [
        (signed_headers(other, BODY), BODY),  # wrong secret
        (tampered, json.dumps({"tag": "6.6.6"}).encode()),  # body changed after signing
        ({**signed_headers(secret, BODY), "webhook-signature": "v2,abc"}, BODY),
        ({**signed_headers(secret, BODY), "webhook-timestamp": "yesterday"}, BODY),
        ({k: v for k, v in signed_headers(secret, BODY).items() if k != "webhook-id"}, BODY),
    ]:
        code, problem = await env.send_raw(body, headers)
        assert code == 401, (headers, problem)
        assert problem["status"] == 401
    assert env.orch.pushed == []


@pytest.mark.parametrize(("skew", "word"), [(-400, "old"), (400, "future")])
async def test_stale_timestamps_are_401_with_a_reason(env: Env, skew: int, word: str) -> None:
    secret = await env.new_secret()
    code, problem = await env.send_raw(BODY, signed_headers(secret, BODY, timestamp=int(time.time()) + skew))
    assert code == 401
    assert word in problem["detail"]
    assert "±300" in problem["detail"]


async def test_a_replayed_webhook_id_is_409(env: Env) -> None:
    secret = await env.new_secret()
    headers = signed_headers(secret, BODY, webhook_id="msg_once")
    assert (await env.send_raw(BODY, headers))[0] == 202
    code, problem = await env.send_raw(BODY, headers)
    assert code == 409
    assert "webhook-id" in problem["detail"]
    # A freshly signed request with the same id is still a replay.
    code, _ = await env.send_raw(BODY, signed_headers(secret, BODY, webhook_id="msg_once"))
    assert code == 409
    # A retry that carries the same Idempotency-Key gets the original answer instead.
    keyed = {**signed_headers(secret, BODY, webhook_id="msg_keyed"), "Idempotency-Key": "ci-run-7"}
    code, first = await env.send_raw(BODY, keyed)
    assert code == 202
    code, again = await env.send_raw(BODY, keyed)
    assert code == 202
    assert again == first


async def test_rotation_and_removal_apply_at_once_on_every_replica(env: Env) -> None:
    async with gateway_client(env.settings) as second:
        old = await env.new_secret()
        assert (await env.send_raw(BODY, signed_headers(old, BODY), client=second))[0] == 202  # cached there

        new = await env.new_secret()  # rotate on the first replica
        assert (await env.send_raw(BODY, signed_headers(old, BODY), client=second))[0] == 401
        assert (await env.send_raw(BODY, signed_headers(new, BODY), client=second))[0] == 202

        resp = await env.client.delete(SECRET_PATH, headers=admin(env.settings))
        assert resp.status == 204
        assert (await env.send_raw(BODY, {}, client=second))[0] == 202
        assert (await env.client.delete(SECRET_PATH, headers=admin(env.settings))).status == 404


async def test_signing_secret_endpoints_need_the_admin_token_and_a_component(env: Env) -> None:
    assert (await env.client.post(SECRET_PATH)).status == 401
    # A CI token is authenticated but reaches only the webhook: 403 (API.md), saying so.
    resp = await env.client.post(SECRET_PATH, headers=bearer(env.token))
    assert resp.status == 403
    assert "webhook" in (await resp.json())["detail"]
    resp = await env.client.post(f"{COMPONENT_PATH}/nope/signing-secret", headers=admin(env.settings))
    assert resp.status == 404


async def test_vault_down_is_503_and_changes_nothing(env: Env, base_env: dict[str, str]) -> None:
    secret = await env.new_secret()
    broken = settings_from(Settings, {**base_env, "LANDFALL_VAULT_ADDR": "http://127.0.0.1:9"})
    async with gateway_client(broken) as no_vault:
        code, problem = await env.send_raw(BODY, signed_headers(secret, BODY), client=no_vault)
        assert code == 503
        assert problem["status"] == 503
        # Rotating fails as a whole: the old secret keeps working.
        resp = await no_vault.post(SECRET_PATH, headers=admin(env.settings))
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        resp = await no_vault.delete(SECRET_PATH, headers=admin(env.settings))
        assert resp.status == 503
    assert (await env.send_raw(BODY, signed_headers(secret, BODY)))[0] == 202
    status = await (await env.client.get(SECRET_PATH, headers=admin(env.settings))).json()
    assert status["required"] is True
