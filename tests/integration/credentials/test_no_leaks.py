"""Secrets are write-only: after a busy run, no password is in any log record, database row or audit event."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid

import asyncpg
import pytest
from nacl.public import PrivateKey

from libs.contracts.messages import PullSecretReply, PullSecretRequest, ResolvedImage, ResolveImage
from libs.devstack.servers import DockerRegistry
from libs.runtime.logs import JsonFormatter
from services.credentials.settings import Settings
from tests.conftest import REGISTRY_USERS
from tests.integration.credentials.helpers import LOCAL_REGISTRIES, ORG, REGISTRIES, running
from tests.support import settings_from

USER, PASSWORD = next(iter(REGISTRY_USERS.items()))


async def test_no_password_in_logs_or_database_rows(
    base_env: dict[str, str], docker_registry: DockerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + uuid.uuid4().hex
    rotated = "rotated-" + uuid.uuid4().hex
    pasted = "pasted-" + uuid.uuid4().hex
    gcp_secret = "gcp-private-" + uuid.uuid4().hex
    gcp_key = json.dumps(
        {"type": "service_account", "client_email": "p@x.iam.gserviceaccount.com", "private_key": gcp_secret},
        indent=2,
    )
    secrets = [PASSWORD, wrong, rotated, pasted, gcp_secret]
    repo = f"team/leak{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(docker_registry.push_image, repo, "1.0", username=USER, password=PASSWORD)

    async with running(settings_from(Settings, base_env, registry_private_hosts=LOCAL_REGISTRIES)) as svc:
        host = docker_registry.host
        good = await svc.create(
            {
                "display_name": "good",
                "auth": {"type": "basic", "host": host, "username": USER, "password": PASSWORD},
            }
        )
        bad = await svc.create(
            {
                "display_name": "bad",
                "auth": {"type": "basic", "host": host, "username": USER, "password": wrong},
            }
        )
        auth = base64.b64encode(f"someone:{pasted}".encode()).decode()
        await svc.create(
            {
                "display_name": "pasted",
                "auth": {"type": "docker-config", "config": {"auths": {"quay.io": {"auth": auth}}}},
            }
        )
        await svc.create(
            {
                "display_name": "gcp",
                "auth": {"type": "basic", "host": "gcr.io", "username": "_json_key", "password": gcp_key},
            }
        )
        # A refused request must not echo the secret either.
        resp = await svc.client.post(
            REGISTRIES,
            json={"display_name": "x", "auth": {"type": "anonymous", "host": "ghcr.io", "password": wrong}},
            headers=svc.headers,
        )
        assert resp.status == 422
        assert wrong not in await resp.text()

        # The right password resolves the tag; the wrong one is refused by the registry (it was sent).
        for registry, outcome in ((good, "resolved"), (bad, "unauthorized")):
            for body in ({}, {"repository": repo}):
                resp = await svc.client.post(
                    f"{REGISTRIES}/{registry['id']}/test", json=body, headers=svc.headers
                )
                assert resp.status == 200
            resolved = await svc.bus.request(
                svc.bus.subjects.rpc_resolve_image,
                ResolveImage(org=ORG, registry_id=registry["id"], repository=repo, reference="1.0"),
                ResolvedImage,
            )
            assert resolved.status == outcome, (registry["display_name"], resolved)
        key = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
        svc.orchestrator.plane_keys[(ORG, "dp_1")] = key
        reply = await svc.bus.request(
            svc.bus.subjects.rpc_pull_secret,
            PullSecretRequest(org=ORG, registry_id=good["id"], dataplane_id="dp_1"),
            PullSecretReply,
        )
        assert reply.sealed is not None
        resp = await svc.client.patch(
            f"{REGISTRIES}/{bad['id']}",
            json={"auth": {"type": "basic", "host": host, "username": USER, "password": rotated}},
            headers=svc.headers,
        )
        assert resp.status == 200
        assert (await svc.client.delete(f"{REGISTRIES}/{good['id']}", headers=svc.headers)).status == 204

        answers = [await (await svc.client.get(REGISTRIES, headers=svc.headers)).text()]
        # create x4, test x4, rotate, delete: one audit event each, as published on the bus.
        await svc.audit.wait_for(10)
        published = [raw.decode() for raw in svc.audit.raw]

        conn = await asyncpg.connect(svc.settings.database_url.get_secret_value())
        try:
            tables = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", svc.schema
            )
            assert {t["table_name"] for t in tables} == {"registries", "schema_migrations"}
            rows: list[str] = []
            for table in tables:
                rows += [
                    r[0]
                    for r in await conn.fetch(
                        f'SELECT row_to_json(t)::text FROM "{svc.schema}"."{table[0]}" t'
                    )
                ]
        finally:
            await conn.close()

    assert any("registry created" in r.getMessage() for r in caplog.records)  # the logs were captured
    formatter = JsonFormatter("credentials")
    logged = "\n".join(formatter.format(r) for r in caplog.records)
    encoded = [base64.b64encode(f"{USER}:{s}".encode()).decode() for s in secrets]
    for secret in secrets + encoded:
        assert secret not in logged
        assert secret not in caplog.text
        assert not [row for row in rows if secret in row]
        assert not [a for a in answers if secret in a]
        assert not [event for event in published if secret in event]
    assert len(rows) >= 5
