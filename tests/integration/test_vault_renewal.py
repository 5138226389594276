"""A service keeps its own Vault token alive (`KvStore.start_renewal`), against the real OpenBao.

The token is made here with the root token, as the stack makes each service's: the service's own
policy (which grants `renew-self`), a TTL of 4 s, renewable, an explicit max well above the test's
length. Without renewal it would be gone 4 s after it was made; the test waits until OpenBao itself
records a renewal later than that first expiry (OpenBao's clock, not the test's), then uses Vault
through the service. A revoked token is the failure case: renewal is logged and retried, and the
token appears in no log line either way.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from libs.devstack.servers import OpenBaoServer
from libs.devstack.servers.plumbing import http_request
from libs.devstack.vault_policies import make_service_tokens
from libs.runtime.settings import VaultSettings
from libs.runtime.vault import KvStore
from services.credentials.settings import Settings
from tests.integration.credentials.helpers import LOCAL_REGISTRIES, REGISTRIES, running
from tests.support import eventually, settings_from

TTL = "4s"


def root_call(openbao: OpenBaoServer, path: str, payload: object) -> dict[str, Any]:
    response = http_request(
        "POST",
        f"{openbao.addr}/v1/{path}",
        body=json.dumps(payload).encode(),
        headers={"X-Vault-Token": openbao.token, "Content-Type": "application/json"},
    )
    assert 200 <= response.status < 300, response.status
    answer: dict[str, Any] = response.json() if response.body else {}
    return answer


def short_token(openbao: OpenBaoServer, prefix: str) -> tuple[str, str]:
    """(token, accessor) of a 4 s, renewable token with the credentials policy."""
    policy = make_service_tokens(openbao.addr, openbao.token, prefix=prefix, services=("credentials",))
    auth = root_call(
        openbao,
        "auth/token/create-orphan",
        {
            "policies": [policy["credentials"].policy],
            "no_default_policy": True,
            "ttl": TTL,
            "explicit_max_ttl": "10m",
            "renewable": True,
        },
    )["auth"]
    return auth["client_token"], auth["accessor"]


def lookup(openbao: OpenBaoServer, accessor: str) -> dict[str, Any]:
    data: dict[str, Any] = root_call(openbao, "auth/token/lookup-accessor", {"accessor": accessor})["data"]
    return data


async def test_a_short_lived_token_outlives_its_first_ttl_because_the_service_renews_it(
    base_env: dict[str, str], openbao: OpenBaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = base_env["LANDFALL_VAULT_PREFIX"]
    token, accessor = short_token(openbao, prefix)
    made = lookup(openbao, accessor)
    first_expiry = made["creation_time"] + made["creation_ttl"]
    env = {**base_env, "LANDFALL_VAULT_TOKEN": token}
    settings = settings_from(Settings, env, registry_private_hosts=LOCAL_REGISTRIES)
    caplog.set_level(logging.DEBUG)
    async with running(settings) as svc:

        async def renewed_past_first_expiry() -> bool:
            return int(lookup(openbao, accessor).get("last_renewal_time") or 0) > int(first_expiry)

        await eventually(renewed_past_first_expiry, timeout=30, what="a renewal after the first TTL")
        # Alive past its first TTL: the service still writes (and reads) its secrets with it.
        resp = await svc.client.post(
            REGISTRIES,
            json={
                "display_name": "ghcr",
                "auth": {"type": "basic", "host": "ghcr.io", "username": "u", "password": "p"},
            },
            headers=svc.headers,
        )
        assert resp.status == 201, await resp.text()
        ready = await svc.client.get("/readyz")
        assert ready.status == 200, await ready.text()
    assert lookup(openbao, accessor)["ttl"] > 0
    assert token not in caplog.text
    assert "vault token renewed" in caplog.text


async def test_a_revoked_token_is_logged_and_retried_never_shown(
    base_env: dict[str, str], openbao: OpenBaoServer, caplog: pytest.LogCaptureFixture
) -> None:
    token, accessor = short_token(openbao, base_env["LANDFALL_VAULT_PREFIX"])
    root_call(openbao, "auth/token/revoke-accessor", {"accessor": accessor})
    kv = KvStore(settings_from(VaultSettings, {**base_env, "LANDFALL_VAULT_TOKEN": token}))
    caplog.set_level(logging.DEBUG)
    kv.start_renewal()
    try:

        async def failed_twice() -> bool:
            return caplog.text.count("vault call failed") >= 2

        await eventually(failed_twice, timeout=15, what="two failed renewal rounds")
    finally:
        kv.close()
    assert kv.renewals == 0
    assert token not in caplog.text


async def test_a_token_without_a_ttl_needs_no_renewal(base_env: dict[str, str]) -> None:
    kv = KvStore(settings_from(VaultSettings, base_env))  # the session's root token: no TTL
    kv.start_renewal()
    try:
        task = kv._renewal
        assert task is not None
        await eventually(lambda: _done(task), what="the renewal task to end")
    finally:
        kv.close()
    assert kv.renewals == 0


async def _done(task: Any) -> bool:
    return bool(task.done())
