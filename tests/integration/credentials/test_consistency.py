"""Nothing half-written: Vault down, or the database lost at COMMIT.

Vault outages use a private OpenBao (stopping the session's would break other
tests). A database lost at the moment of COMMIT is simulated with a deferred
constraint trigger in this test's own schema that fails with SQLSTATE 57P01
(admin_shutdown), the error PostgreSQL sends when it goes away under a session.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import hvac.exceptions
import pytest
from nacl.public import PrivateKey

from libs.contracts.messages import PullSecretReply, PullSecretRequest
from libs.devstack.servers import DockerRegistry, OpenBaoServer
from libs.runtime.bus import RpcFailed
from services.credentials.settings import Settings
from tests.conftest import REGISTRY_USERS
from tests.integration.credentials.helpers import LOCAL_REGISTRIES, ORG, REGISTRIES, Harness, running
from tests.support import settings_from

USER, PASSWORD = next(iter(REGISTRY_USERS.items()))

FAIL_AT_COMMIT = """
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.display_name LIKE 'fail-at-commit%' THEN
        RAISE EXCEPTION 'simulated: the database went away at COMMIT' USING ERRCODE = '57P01';
    END IF;
    RETURN NEW;
END $$;
CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT OR UPDATE ON registries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_at_commit();
"""


def basic(password: str = PASSWORD, host: str = "ghcr.io") -> dict[str, Any]:
    return {"type": "basic", "host": host, "username": USER, "password": password}


async def row_count(svc: Harness, display_name: str) -> int:
    conn = await asyncpg.connect(svc.settings.database_url.get_secret_value())
    try:
        count: int = await conn.fetchval(
            f'SELECT count(*) FROM "{svc.schema}".registries WHERE display_name = $1', display_name
        )
        return count
    finally:
        await conn.close()


@pytest.fixture
async def private_vault(tmp_path: Path) -> AsyncIterator[OpenBaoServer]:
    server = OpenBaoServer(tmp_path / "bao", root_token="root-" + uuid.uuid4().hex)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_vault_down_is_503_with_retry_after_and_leaves_nothing(
    base_env: dict[str, str], private_vault: OpenBaoServer
) -> None:
    env = {**base_env, "LANDFALL_VAULT_ADDR": private_vault.addr, "LANDFALL_VAULT_TOKEN": private_vault.token}
    async with running(settings_from(Settings, env)) as svc:
        before = await svc.create({"display_name": "before", "auth": basic()})
        assert (await svc.client.get("/readyz")).status == 200

        await asyncio.to_thread(private_vault.stop)

        resp = await svc.client.post(
            REGISTRIES, json={"display_name": "during", "auth": basic()}, headers=svc.headers
        )
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0
        problem = await resp.json()
        assert problem["status"] == 503
        assert "Vault" in problem["detail"]
        assert await row_count(svc, "during") == 0
        listed = await (await svc.client.get(REGISTRIES, headers=svc.headers)).json()
        assert [r["display_name"] for r in listed["items"]] == ["before"]

        ready = await svc.client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"]["vault"].startswith("unavailable")

        # Rotation and deletion keep the registry as it was.
        path = f"{REGISTRIES}/{before['id']}"
        resp = await svc.client.patch(path, json={"auth": basic(password="new")}, headers=svc.headers)
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        resp = await svc.client.delete(path, headers=svc.headers)
        assert resp.status == 503
        assert await (await svc.client.get(path, headers=svc.headers)).json() == before

        # Testing the connection needs the secret: 503 too; the orchestrator is told "unavailable".
        assert (await svc.client.post(path + "/test", json={}, headers=svc.headers)).status == 503
        key = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
        svc.orchestrator.plane_keys[(ORG, "dp_1")] = key
        with pytest.raises(RpcFailed) as failed:
            await svc.bus.request(
                svc.bus.subjects.rpc_pull_secret,
                PullSecretRequest(org=ORG, registry_id=before["id"], dataplane_id="dp_1"),
                PullSecretReply,
            )
        assert failed.value.error.code == "unavailable"

        # Registries without a secret do not need Vault.
        await svc.create({"display_name": "public", "auth": {"type": "anonymous", "host": "ghcr.io"}})

        # What changed nothing is not in the audit trail: the two registries created are all it holds.
        events = await svc.audit.quiet()
        assert [(e.action, e.outcome) for e in events] == [("registry.create", "ok")] * 2


@pytest.fixture
def settings(base_env: dict[str, str]) -> Settings:
    return settings_from(
        Settings, base_env, registry_timeout_seconds=5, registry_private_hosts=LOCAL_REGISTRIES
    )


@pytest.fixture
async def svc_failing_commits(svc: Harness) -> Harness:
    conn = await asyncpg.connect(svc.settings.database_url.get_secret_value())
    try:
        await conn.execute(f'SET search_path = "{svc.schema}"')
        await conn.execute(FAIL_AT_COMMIT)
    finally:
        await conn.close()
    return svc


async def test_a_create_whose_commit_fails_leaves_no_secret_in_vault(svc_failing_commits: Harness) -> None:
    svc = svc_failing_commits
    resp = await svc.client.post(
        REGISTRIES, json={"display_name": "fail-at-commit", "auth": basic()}, headers=svc.headers
    )
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"]
    assert await row_count(svc, "fail-at-commit") == 0
    with pytest.raises(hvac.exceptions.InvalidPath):
        svc.vault().secrets.kv.v2.list_secrets(
            path=f"{svc.settings.vault_prefix}/orgs/{ORG}/registries", mount_point="secret"
        )


async def test_a_rotation_whose_commit_fails_keeps_the_old_credentials(
    svc_failing_commits: Harness, docker_registry: DockerRegistry
) -> None:
    svc = svc_failing_commits
    created = await svc.create({"display_name": "good", "auth": basic(host=docker_registry.host)})
    path = f"{REGISTRIES}/{created['id']}"
    resp = await svc.client.patch(
        path,
        json={"display_name": "fail-at-commit", "auth": basic(password="wrong", host=docker_registry.host)},
        headers=svc.headers,
    )
    assert resp.status == 503
    assert await (await svc.client.get(path, headers=svc.headers)).json() == created

    # Vault saw version 2, but it was destroyed and the registry still uses version 1.
    meta = svc.vault().secrets.kv.v2.read_secret_metadata(
        path=svc.vault_path(created["id"]), mount_point="secret"
    )
    assert meta["data"]["versions"]["2"]["destroyed"] is True
    test = await (await svc.client.post(path + "/test", json={}, headers=svc.headers)).json()
    assert test["ok"] is True, test
