"""POST /v1/webhooks/deploy: validation, authorisation, JetStream before 202, idempotency, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from libs.contracts.messages import ImagePushed
from services.webhook_gateway.entrypoints.routes import GATEWAY
from services.webhook_gateway.settings import Settings
from services.webhook_gateway.usecases import Gateway
from tests.integration.webhook_gateway.helpers import (
    Env,
    FakeOrchestrator,
    component_info,
    create_token,
    fake_orchestrator,
    gateway_client,
    private_nats,
)
from tests.support import bearer, eventually, settings_from

DIGEST = "sha256:" + "ab" * 32


async def _count_accepted(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        count: int = await conn.fetchval(
            f"SELECT count(*) FROM webhook_gateway{settings.schema_suffix}.accepted_deployments"
        )
        return count
    finally:
        await conn.close()


async def _stream_messages(orch: FakeOrchestrator) -> int:
    info = await orch.bus.js.stream_info(orch.bus.subjects.intake_stream.name)
    return int(info.state.messages)


async def test_accepted_image_is_on_jetstream_before_the_202(env: Env) -> None:
    status, body = await env.send({"image": "GHCR.io/acme/api:1.4.2"})
    assert status == 202, body
    assert body["status"] == "pending"
    assert body["deployment_id"].startswith("dep_")
    assert body["status_url"] == f"/v1/webhooks/deployments/{body['deployment_id']}"

    js = env.orch.bus.js
    stored = await js.get_last_msg(
        env.orch.bus.subjects.intake_stream.name, env.orch.bus.subjects.image_pushed
    )
    assert stored.data is not None
    event = ImagePushed.model_validate_json(stored.data)
    assert event.deployment_id == body["deployment_id"]
    assert (stored.headers or {}).get("Nats-Msg-Id") == body["deployment_id"]
    assert (event.org, event.project, event.component) == ("acme", "shop", "api")
    assert event.image == "ghcr.io/acme/api:1.4.2"
    assert event.token_prefix == env.token[:12]
    assert env.token not in stored.data.decode()


async def test_tag_and_digest_apply_to_the_components_repository(env: Env) -> None:
    status, tag_body = await env.send({"tag": "2.0.1"})
    assert status == 202
    status, digest_body = await env.send({"digest": DIGEST})
    assert status == 202
    pushed = await env.orch.wait_pushed(2)
    images = {p.deployment_id: p.image for p in pushed}
    assert images[tag_body["deployment_id"]] == "ghcr.io/acme/api:2.0.1"
    assert images[digest_body["deployment_id"]] == f"ghcr.io/acme/api@{DIGEST}"


async def test_docker_hub_names_are_normalised(settings: Settings) -> None:
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api", host="registry-1.docker.io", repository="nginx"))
        token = (await create_token(client, settings))["token"]
        for image in ("nginx:1.27", "docker.io/library/nginx:1.27", "index.docker.io/library/nginx:1.27"):
            resp = await client.post("/v1/webhooks/deploy", json={"image": image}, headers=bearer(token))
            assert resp.status == 202, (image, await resp.text())
        resp = await client.post(
            "/v1/webhooks/deploy", json={"image": "acme/nginx:1.27"}, headers=bearer(token)
        )
        assert resp.status == 403
        pushed = await orch.wait_pushed(3)
        assert {p.image for p in pushed} == {"docker.io/library/nginx:1.27"}


@pytest.mark.parametrize(
    "image",
    [
        "docker.io/acme/api:1.0",
        "ghcr.io/acme/other:1.0",
        "ghcr.io/acme/api/sub:1.0",
        "ghcr.io:443/acme/api:1.0",
    ],
)
async def test_another_registry_or_repository_is_forbidden(env: Env, image: str) -> None:
    status, body = await env.send({"image": image})
    assert status == 403, body
    assert "ghcr.io/acme/api" in body["detail"]
    assert await _stream_messages(env.orch) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"image": "ghcr.io/acme/API:1.0"}, "image"),
        ({"image": "ghcr.io/acme/api"}, "image"),
        ({"image": "https://ghcr.io/acme/api:1"}, "image"),
        ({"image": "ghcr.io/acme/api@sha256:1234"}, "image"),
        ({"image": ""}, "image"),
        ({"tag": "-leading-dash"}, "tag"),
        ({"tag": "x" * 129}, "tag"),
        ({"tag": ""}, "tag"),
        ({"digest": "sha256:" + "AB" * 32}, "digest"),
        ({"digest": "md5:" + "ab" * 16}, "digest"),
        ({}, "body"),
        ({"image": "ghcr.io/acme/api:1", "tag": "1"}, "body"),
        ({"imgae": "ghcr.io/acme/api:1"}, "imgae"),
        ({"tag": 12}, "tag"),
    ],
)
async def test_invalid_references_are_422_naming_the_field(env: Env, body: Any, field: str) -> None:
    status, problem = await env.send(body)
    assert status == 422, problem
    assert problem["errors"][0]["field"] == field
    assert problem["detail"]


async def test_body_rules_413_415_400(env: Env) -> None:
    headers = bearer(env.token)
    resp = await env.client.post("/v1/webhooks/deploy", json={"tag": "x" * 70_000}, headers=headers)
    assert resp.status == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"tag": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    resp = await env.client.post(
        "/v1/webhooks/deploy", data=chunks(), headers={**headers, "Content-Type": "application/json"}
    )
    assert resp.status == 413

    resp = await env.client.post(
        "/v1/webhooks/deploy",
        data="tag=1.0",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 415
    resp = await env.client.post(
        "/v1/webhooks/deploy", data=b'{"tag": "1.0"', headers={**headers, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    resp = await env.client.post("/v1/webhooks/deploy", json=["tag"], headers=headers)
    assert resp.status == 422
    assert await _stream_messages(env.orch) == 0


async def test_idempotency_key_returns_the_same_deployment(env: Env) -> None:
    status, first = await env.send({"tag": "1.0"}, **{"Idempotency-Key": "build-42"})
    assert status == 202
    status, again = await env.send({"tag": "1.0"}, **{"Idempotency-Key": "build-42"})
    assert status == 202
    assert again == first
    # The same image spelled differently is the same request.
    status, spelled = await env.send({"image": "ghcr.io/acme/api:1.0"}, **{"Idempotency-Key": "build-42"})
    assert status == 202
    assert spelled == first
    assert await _stream_messages(env.orch) == 1

    status, problem = await env.send({"tag": "2.0"}, **{"Idempotency-Key": "build-42"})
    assert status == 422
    assert problem["errors"][0]["field"] == "Idempotency-Key"

    status, other = await env.send({"tag": "1.0"}, **{"Idempotency-Key": "build-43"})
    assert status == 202
    assert other["deployment_id"] != first["deployment_id"]
    status, no_key = await env.send({"tag": "1.0"})
    assert status == 202
    assert no_key["deployment_id"] not in {first["deployment_id"], other["deployment_id"]}
    assert await _stream_messages(env.orch) == 3

    status, problem = await env.send({"tag": "1.0"}, **{"Idempotency-Key": "x" * 300})
    assert status == 422


async def test_concurrent_retries_with_one_key_make_one_deployment(env: Env) -> None:
    results = await asyncio.gather(
        *(env.send({"tag": "3.0"}, **{"Idempotency-Key": "race"}) for _ in range(8))
    )
    assert {status for status, _ in results} == {202}
    assert len({body["deployment_id"] for _, body in results}) == 1
    assert await _stream_messages(env.orch) == 1


async def _committed(settings: Settings, deployment_id: str) -> bool:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        found = await conn.fetchval(
            f"SELECT 1 FROM webhook_gateway{settings.schema_suffix}.accepted_deployments "
            "WHERE deployment_id = $1",
            deployment_id,
        )
        return found is not None
    finally:
        await conn.close()


async def test_the_request_is_committed_before_it_is_published(env: Env) -> None:
    """Nothing reaches JetStream that the database has not committed: were PostgreSQL to die between
    the publish and the COMMIT, CI would get a 503 for an image that is deployed anyway, and its retry
    with the same Idempotency-Key would become a second deployment."""
    gw: Gateway = env.client.app[GATEWAY]
    real = gw.bus.publish_durable
    seen: list[bool] = []

    async def checking(subject: str, message: Any, *, msg_id: str, headers: Any = None) -> int:
        seen.append(await _committed(env.settings, msg_id))
        return await real(subject, message, msg_id=msg_id, headers=headers)

    gw.bus.publish_durable = checking  # type: ignore[method-assign]
    status, body = await env.send({"tag": "1.0"}, **{"Idempotency-Key": "commit-first"})
    assert status == 202, body
    assert seen == [True]


async def test_a_retry_after_a_crash_behind_the_publish_is_the_same_deployment(env: Env) -> None:
    """The gateway stored the request on JetStream and died before answering: CI's retry with the same
    Idempotency-Key gets the deployment that is already on its way, and JetStream holds one copy."""
    gw: Gateway = env.client.app[GATEWAY]
    real = gw.bus.publish_durable
    crashes = [RuntimeError("the gateway died here")]

    async def crashing(subject: str, message: Any, *, msg_id: str, headers: Any = None) -> int:
        seq = await real(subject, message, msg_id=msg_id, headers=headers)
        if crashes:
            raise crashes.pop()
        return seq

    gw.bus.publish_durable = crashing  # type: ignore[method-assign]
    resp = await env.client.post(
        "/v1/webhooks/deploy", json={"tag": "1.0"}, headers={**bearer(env.token), "Idempotency-Key": "k"}
    )
    assert resp.status == 500  # what CI sees of a crash: no 202
    status, body = await env.send({"tag": "1.0"}, **{"Idempotency-Key": "k"})
    assert status == 202, body
    assert await _stream_messages(env.orch) == 1
    stored = await env.orch.bus.js.get_last_msg(
        env.orch.bus.subjects.intake_stream.name, env.orch.bus.subjects.image_pushed
    )
    assert ImagePushed.model_validate_json(stored.data or b"").deployment_id == body["deployment_id"]
    assert await _count_accepted(env.settings) == 1


async def test_idempotency_key_is_per_component(env: Env) -> None:
    env.orch.add(component_info("web"))
    web_token = (await create_token(env.client, env.settings, "web"))["token"]
    status, api = await env.send({"tag": "1.0"}, **{"Idempotency-Key": "shared"})
    resp = await env.client.post(
        "/v1/webhooks/deploy", json={"tag": "1.0"}, headers={**bearer(web_token), "Idempotency-Key": "shared"}
    )
    assert resp.status == 202
    assert status == 202
    assert (await resp.json())["deployment_id"] != api["deployment_id"]


async def test_rate_limit_answers_429_with_retry_after(base_env: dict[str, str]) -> None:
    settings = settings_from(Settings, base_env, rate_limit_per_second=0.5, rate_limit_burst=2)
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        # The buckets read a clock the test holds still, so the refill never races the requests.
        now = [1000.0]
        assert client.app is not None
        gateway: Gateway = client.app[GATEWAY]
        gateway.access.limiter.clock = lambda: now[0]
        orch.add(component_info("api"))
        token = (await create_token(client, settings))["token"]
        other = (await create_token(client, settings))["token"]

        async def deploy(with_token: str) -> Any:
            return await client.post("/v1/webhooks/deploy", json={"tag": "1.0"}, headers=bearer(with_token))

        statuses = [(await deploy(token)).status for _ in range(2)]
        resp = await deploy(token)
        assert [*statuses, resp.status] == [202, 202, 429]
        assert resp.headers["Retry-After"] == "2"  # one request at 0.5 per second
        assert (await resp.json())["status"] == 429
        # The limit is per token.
        assert (await deploy(other)).status == 202
        # Not quite the time Retry-After gave: still refused; then exactly one more is let through.
        now[0] += 1.9
        assert (await deploy(token)).status == 429
        now[0] += 0.1
        assert (await deploy(token)).status == 202
        assert (await deploy(token)).status == 429


async def test_component_changes_are_picked_up_at_once(env: Env) -> None:
    status, _ = await env.send({"tag": "1.0"})
    assert status == 202
    moved = env.orch.add(component_info("api", repository="acme/api-v2"))
    await env.orch.component_changed(moved)
    status, body = await env.send({"image": "ghcr.io/acme/api-v2:1.0"})
    assert status == 202, body
    status, _ = await env.send({"image": "ghcr.io/acme/api:1.0"})
    assert status == 403
    del env.orch.components[("acme", "shop", "api")]
    await env.orch.component_changed(moved)
    status, body = await env.send({"tag": "1.0"})
    assert status == 403
    assert "no longer exists" in body["detail"]


async def test_status_url_is_absolute_with_public_url(base_env: dict[str, str]) -> None:
    settings = settings_from(Settings, base_env, public_url="https://gw.example.com/")
    async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
        orch.add(component_info("api"))
        token = (await create_token(client, settings))["token"]
        resp = await client.post("/v1/webhooks/deploy", json={"tag": "1.0"}, headers=bearer(token))
        body = await resp.json()
        assert body["status_url"] == f"https://gw.example.com/v1/webhooks/deployments/{body['deployment_id']}"


async def test_nats_down_is_503_and_nothing_is_recorded(base_env: dict[str, str], tmp_path: Path) -> None:
    async with private_nats(tmp_path / "nats") as server:
        settings = settings_from(Settings, base_env, nats_url=server.url)
        async with fake_orchestrator(settings) as orch, gateway_client(settings) as client:
            orch.add(component_info("api"))
            token = (await create_token(client, settings))["token"]
            resp = await client.post("/v1/webhooks/deploy", json={"tag": "1.0"}, headers=bearer(token))
            assert resp.status == 202
            assert await _count_accepted(settings) == 1

            # JetStream refuses (no stream) while the orchestrator still answers: the insert is rolled back.
            await orch.bus.js.delete_stream(orch.bus.subjects.intake_stream.name)
            resp = await client.post(
                "/v1/webhooks/deploy", json={"tag": "3.0"}, headers={**bearer(token), "Idempotency-Key": "k1"}
            )
            assert resp.status == 503
            assert await _count_accepted(settings) == 1
            await orch.bus.js.add_stream(
                name=orch.bus.subjects.intake_stream.name,
                subjects=list(orch.bus.subjects.intake_stream.subjects),
            )

            await asyncio.to_thread(server.stop)
            for body in ({"tag": "2.0"}, {"tag": "3.0"}):
                resp = await client.post(
                    "/v1/webhooks/deploy", json=body, headers={**bearer(token), "Idempotency-Key": "k1"}
                )
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) >= 1
            assert await _count_accepted(settings) == 1

            # Back up: the stream holds only the accepted image, and the key was not burnt.
            await asyncio.to_thread(server.start)

            async def accepted() -> bool:
                """CI retries after Retry-After; the gateway reconnects by itself."""
                if not orch.bus.connected:
                    return False
                resp = await client.post(
                    "/v1/webhooks/deploy",
                    json={"tag": "3.0"},
                    headers={**bearer(token), "Idempotency-Key": "k1"},
                )
                assert resp.status in (202, 503), await resp.text()
                return resp.status == 202

            await eventually(
                accepted, timeout=60, interval=0.1, what="the retried webhook accepted after NATS"
            )
            assert await _count_accepted(settings) == 2
            assert await _stream_messages(orch) == 1  # the stream was re-created above
