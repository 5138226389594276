"""The orchestrator's management API, enrollment, heartbeats and RPC servers (real NATS + PostgreSQL)."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import ANY

import pytest

from libs.contracts.ids import new_id
from libs.contracts.messages import (
    AgentHeartbeat,
    ComponentGet,
    ComponentInfo,
    DeploymentGet,
    DeploymentView,
    RegistryUsage,
    RegistryUsageReply,
)
from libs.runtime.bus import RpcFailed
from libs.runtime.service import POOL
from tests.integration.orchestrator.helpers import (
    DIGEST_1_0,
    IMAGE_1_0,
    REGISTRY_HOST,
    REPOSITORY,
    Harness,
    now,
    running_orchestrator,
)
from tests.support import eventually

IMAGE = IMAGE_1_0


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def test_orgs_dataplanes_environments_projects_and_components(orch: Harness) -> None:
    org = await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    assert org["name"] == "acme"
    assert (await orch.ok("GET", "/v1/orgs/acme"))["name"] == "acme"
    await orch.call("POST", "/v1/orgs", {"name": "acme"}, expect=409)

    plane = await orch.ok("POST", "/v1/orgs/acme/dataplanes", {"name": "eu-1", "ingress_class": "nginx"}, 201)
    assert plane["id"].startswith("dp_")
    assert plane["enrollment_token"]
    planes = (await orch.ok("GET", "/v1/orgs/acme/dataplanes"))["items"]
    assert planes == [
        {
            "id": plane["id"],
            "name": "eu-1",
            "ingress_class": "nginx",
            "enrolled": False,
            "enrolled_at": None,
            "created_at": planes[0]["created_at"],
            "agent": {"connected": False, "last_seen": None, "version": None},
        }
    ]
    assert "enrollment_token" not in planes[0]

    envs = "/v1/orgs/acme/environments"
    await orch.ok("POST", envs, {"name": "production", "dataplane_id": plane["id"], "order": 30}, 201)
    await orch.ok("POST", envs, {"name": "development", "dataplane_id": plane["id"], "order": 10}, 201)
    await orch.ok("POST", envs, {"name": "staging", "dataplane_id": plane["id"], "order": 20}, 201)
    listed = (await orch.ok("GET", envs))["items"]
    assert [e["name"] for e in listed] == ["development", "staging", "production"]
    status, problem, _ = await orch.call(
        "POST", envs, {"name": "staging", "dataplane_id": plane["id"], "order": 40}
    )
    assert status == 409, problem
    status, problem, _ = await orch.call(
        "POST", envs, {"name": "qa", "dataplane_id": plane["id"], "order": 20}
    )
    assert status == 409, problem
    status, problem, _ = await orch.call(
        "POST", envs, {"name": "qa", "dataplane_id": new_id("dp"), "order": 50}
    )
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "dataplane_id"

    await orch.ok("POST", "/v1/orgs/acme/projects", {"name": "shop"}, 201)
    assert [p["name"] for p in (await orch.ok("GET", "/v1/orgs/acme/projects"))["items"]] == ["shop"]
    registry_id = orch.credentials.add_registry("acme")
    created = await orch.ok(
        "POST",
        "/v1/orgs/acme/projects/shop/components",
        {
            "name": "nightly",
            "type": "scheduled-task",
            "registry_id": registry_id,
            "image": IMAGE,
            "schedule": "30 2 * * *",
            "timezone": "Europe/Paris",
            "env": {"LOG_LEVEL": "debug"},
        },
        201,
    )
    assert created["schedule"] == "30 2 * * *"
    assert created["timezone"] == "Europe/Paris"
    assert created["port"] is None
    assert created["environments"] == {}
    web = await orch.ok(
        "POST",
        "/v1/orgs/acme/projects/shop/components",
        {"name": "web", "type": "web-application", "registry_id": registry_id, "image": IMAGE},
        201,
    )
    assert web["port"] == 8080
    fetched = await orch.ok("GET", "/v1/orgs/acme/projects/shop/components/nightly")
    assert fetched["env"] == {"LOG_LEVEL": "debug"}
    names = [c["name"] for c in (await orch.ok("GET", "/v1/orgs/acme/projects/shop/components"))["items"]]
    assert names == ["nightly", "web"]
    status, problem, _ = await orch.call(
        "POST",
        "/v1/orgs/acme/projects/shop/components",
        {"name": "web", "type": "service", "registry_id": registry_id, "image": IMAGE},
    )
    assert status == 409, problem

    async def announced() -> bool:
        return {c.component for c in orch.component_changes} >= {"nightly", "web"}

    await eventually(announced, what="ComponentChanged for both components")


async def test_an_enrollment_token_works_once_and_a_new_one_re_enrolls(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    plane = await orch.ok("POST", "/v1/orgs/acme/dataplanes", {"name": "eu-1"}, 201)
    body = {"enrollment_token": plane["enrollment_token"], "public_key": _key(), "version": "1.2.3"}

    # No admin token needed: the one-time token is the credential.
    status, enrolled, _ = await orch.call("POST", "/v1/dataplanes/enroll", body, token=None)
    assert status == 200, enrolled
    assert enrolled == {"dataplane_id": plane["id"], "org": "acme", "name": "eu-1", "command_keys": [ANY]}
    status, problem, _ = await orch.call("POST", "/v1/dataplanes/enroll", body, token=None)
    assert status == 401, problem
    listed = (await orch.ok("GET", "/v1/orgs/acme/dataplanes"))["items"][0]
    assert listed["enrolled"] is True

    fresh = await orch.ok("POST", f"/v1/orgs/acme/dataplanes/{plane['id']}/enrollment-token", None, 201)
    assert fresh["enrollment_token"] != plane["enrollment_token"]
    lifetime = datetime.fromisoformat(fresh["enrollment_expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=23) < lifetime <= timedelta(hours=24)  # the default: a day
    status, problem, _ = await orch.call(
        "POST",
        "/v1/dataplanes/enroll",
        {**body, "enrollment_token": fresh["enrollment_token"], "public_key": "abc"},
    )
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "public_key"
    status, _, _ = await orch.call(
        "POST", "/v1/dataplanes/enroll", {**body, "enrollment_token": fresh["enrollment_token"]}, token=None
    )
    assert status == 200


async def test_an_unused_enrollment_token_expires(base_env: dict[str, str]) -> None:
    async with running_orchestrator(base_env, enrollment_token_ttl_seconds=600.0) as orch:
        await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
        plane = await orch.ok("POST", "/v1/orgs/acme/dataplanes", {"name": "eu-1"}, 201)
        expires = datetime.fromisoformat(plane["enrollment_expires_at"])
        lifetime = expires - datetime.fromisoformat(plane["created_at"])
        assert abs(lifetime - timedelta(seconds=600)) <= timedelta(seconds=1)  # the setting, not the default
        # ten minutes later: the expiry moved into the past in the row (PostgreSQL's clock judges it)
        await orch.client.app[POOL].execute(
            "UPDATE dataplanes SET enrollment_expires_at = now() - interval '1 second' WHERE id = $1",
            plane["id"],
        )

        body = {"enrollment_token": plane["enrollment_token"], "public_key": _key(), "version": "1.2.3"}
        status, problem, _ = await orch.call("POST", "/v1/dataplanes/enroll", body, token=None)
        assert status == 401, problem
        assert "expired" in problem["detail"]
        assert f"/v1/orgs/acme/dataplanes/{plane['id']}/enrollment-token" in problem["detail"]
        listed = (await orch.ok("GET", "/v1/orgs/acme/dataplanes"))["items"][0]
        assert listed["enrolled"] is False


async def test_heartbeats_show_the_agent_connected_with_its_version(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    plane = await orch.ok("POST", "/v1/orgs/acme/dataplanes", {"name": "eu-1"}, 201)
    beat = AgentHeartbeat(dataplane_id=plane["id"], version="0.9.1", sent_at=now())
    await orch.bus.publish(orch.subjects.heartbeat(plane["id"]), beat)

    async def connected() -> dict[str, Any] | None:
        agent: dict[str, Any] = (await orch.ok("GET", "/v1/orgs/acme/dataplanes"))["items"][0]["agent"]
        return agent if agent["connected"] else None

    agent = await eventually(connected, what="the agent to show as connected")
    assert agent["version"] == "0.9.1"
    assert agent["last_seen"] is not None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"image": "not a reference"}, "image"),
        ({"image": "ghcr.io/team/api:1.0"}, "image"),  # not the registry's host
        ({"registry_id": "reg_01hzzzzzzzzzzzzzzzzzzzzzzz"}, "registry_id"),
        ({"registry_id": "nonsense"}, "registry_id"),
        ({"type": "scheduled-task", "timezone": "UTC"}, "schedule"),
        ({"type": "scheduled-task", "schedule": "0 * * *", "timezone": "UTC"}, "schedule"),
        ({"type": "scheduled-task", "schedule": "0 * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"type": "scheduled-task", "schedule": "0 * * * *"}, "timezone"),
        ({"schedule": "0 * * * *"}, "schedule"),
        ({"timezone": "UTC"}, "timezone"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"type": "manual-task", "port": 8080}, "port"),
        ({"env": {"1BAD": "x"}}, "env.1BAD"),
        ({"type": "daemon"}, "type"),
        ({"name": "Not_A_Name"}, "name"),
    ],
)
async def test_invalid_components_are_422_problems_naming_the_field(
    orch: Harness, changes: dict[str, Any], field: str
) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    await orch.ok("POST", "/v1/orgs/acme/projects", {"name": "shop"}, 201)
    registry_id = orch.credentials.add_registry("acme")
    body = {"name": "api", "type": "service", "registry_id": registry_id, "image": IMAGE, **changes}
    status, problem, headers = await orch.call("POST", "/v1/orgs/acme/projects/shop/components", body)
    assert status == 422, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert field in [e["field"] for e in problem["errors"]], problem


async def test_another_orgs_objects_are_not_found(orch: Harness) -> None:
    world = await orch.provision(org="acme")
    await orch.ok("POST", "/v1/orgs", {"name": "other"}, 201)
    await orch.ok("POST", "/v1/orgs/other/projects", {"name": "shop"}, 201)

    for path in (
        "/v1/orgs/other/projects/shop/components/api",
        f"/v1/orgs/other/dataplanes/{world.dataplane_id}",
        "/v1/orgs/other/projects/nope",
        "/v1/orgs/nobody",
        "/v1/orgs/nobody/dataplanes",
        "/v1/orgs/Bad_Name/environments",
        "/v1/deployments/dep_not-an-id",
        "/v1/deployments/" + new_id("dep"),
    ):
        status, problem, _ = await orch.call("GET", path)
        assert status == 404, (path, problem)
    status, _, _ = await orch.call("POST", f"/v1/orgs/other/dataplanes/{world.dataplane_id}/enrollment-token")
    assert status == 404
    # Another org's data plane or registry cannot be used either.
    status, problem, _ = await orch.call(
        "POST", "/v1/orgs/other/environments", {"name": "dev", "dataplane_id": world.dataplane_id, "order": 1}
    )
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "dataplane_id"
    status, problem, _ = await orch.call(
        "POST",
        "/v1/orgs/other/projects/shop/components",
        {"name": "api", "type": "service", "registry_id": world.registry_id, "image": IMAGE},
    )
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "registry_id"


async def test_admin_token_is_required(orch: Harness) -> None:
    status, _, headers = await orch.call("POST", "/v1/orgs", {"name": "acme"}, token=None)
    assert status == 401
    assert "WWW-Authenticate" in headers
    status, _, _ = await orch.call("GET", "/v1/orgs/acme", token="wrong")
    assert status == 401


async def test_component_create_answers_503_while_the_credentials_service_is_away(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    await orch.ok("POST", "/v1/orgs/acme/projects", {"name": "shop"}, 201)
    registry_id = orch.credentials.add_registry("acme")
    await orch.credentials.stop()
    body = {"name": "api", "type": "service", "registry_id": registry_id, "image": IMAGE}
    status, problem, headers = await orch.call("POST", "/v1/orgs/acme/projects/shop/components", body)
    assert status == 503, problem
    assert int(headers["Retry-After"]) > 0
    await orch.credentials.start()
    await orch.call("POST", "/v1/orgs/acme/projects/shop/components", body, expect=201)


async def test_rpc_servers_answer_for_components_deployments_and_registry_usage(orch: Harness) -> None:
    world = await orch.provision()
    info = await orch.bus.request(
        orch.subjects.rpc_component_get,
        ComponentGet(org="acme", project="shop", component="api"),
        ComponentInfo,
    )
    assert info.registry_id == world.registry_id
    assert info.registry_host == REGISTRY_HOST
    assert info.repository == REPOSITORY
    assert info.type == "service"
    with pytest.raises(RpcFailed) as missing:
        await orch.bus.request(
            orch.subjects.rpc_component_get,
            ComponentGet(org="other", project="shop", component="api"),
            ComponentInfo,
        )
    assert missing.value.error.code == "not_found"

    usage = await orch.bus.request(
        orch.subjects.rpc_registry_usage,
        RegistryUsage(org="acme", registry_id=world.registry_id),
        RegistryUsageReply,
    )
    assert usage.components == ["shop/api"]
    unused = await orch.bus.request(
        orch.subjects.rpc_registry_usage,
        RegistryUsage(org="other", registry_id=world.registry_id),
        RegistryUsageReply,
    )
    assert unused.components == []

    deployment_id = await orch.push(world, IMAGE)
    await orch.wait_status(deployment_id, "dispatched")
    view = await orch.bus.request(
        orch.subjects.rpc_deployment_get, DeploymentGet(deployment_id=deployment_id), DeploymentView
    )
    assert view.status == "dispatched"
    assert view.digest == DIGEST_1_0
    with pytest.raises(RpcFailed) as gone:
        await orch.bus.request(
            orch.subjects.rpc_deployment_get, DeploymentGet(deployment_id=new_id("dep")), DeploymentView
        )
    assert gone.value.error.code == "not_found"

    # Once the component is deleted the registry is free, and gateways hear about it.
    await orch.call("DELETE", world.component_path, expect=204)
    usage = await orch.bus.request(
        orch.subjects.rpc_registry_usage,
        RegistryUsage(org="acme", registry_id=world.registry_id),
        RegistryUsageReply,
    )
    assert usage.components == []
    await orch.call("GET", world.component_path, expect=404)


async def test_patching_a_component_is_validated_and_announced(orch: Harness) -> None:
    world = await orch.provision()
    before = len(orch.component_changes)
    patched = await orch.ok("PATCH", world.component_path, {"port": 9090, "env": {"MODE": "fast"}})
    assert patched["port"] == 9090
    assert patched["env"] == {"MODE": "fast"}
    assert patched["image"] == IMAGE
    status, problem, _ = await orch.call("PATCH", world.component_path, {"schedule": "* * * * *"})
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "schedule"

    async def announced() -> bool:
        return len(orch.component_changes) > before

    await eventually(announced, what="ComponentChanged after the patch")


async def test_patching_with_null_clears_or_refuses_never_500(orch: Harness) -> None:
    """Found by `make chaos` (schemathesis): `{"env": null}` was a 500."""
    world = await orch.provision()
    await orch.ok("PATCH", world.component_path, {"env": {"MODE": "fast"}, "port": 9090})
    cleared = await orch.ok("PATCH", world.component_path, {"env": None, "port": None})
    assert cleared["env"] == {}
    assert cleared["port"] == 8080  # the default for a service
    for field in ("image", "registry_id"):
        status, problem, _ = await orch.call("PATCH", world.component_path, {field: None})
        assert status == 422, problem
        assert problem["errors"][0]["field"] == field
    assert (await orch.ok("GET", world.component_path))["image"] == IMAGE


async def test_openapi_and_readiness(orch: Harness) -> None:
    document = await orch.ok("GET", "/openapi.json")
    assert "/v1/orgs/{org}/projects/{project}/components/{component}/promotions" in document["paths"]
    assert "ComponentCreate" in document["components"]["schemas"]
    ready = await orch.ok("GET", "/readyz")
    assert ready["checks"] == {"nats": "ok", "postgres": "ok"}


async def test_guessing_enrollment_tokens_is_429_before_any_lookup(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The enrollment route needs no bearer token, so refused enrollment tokens count per address."""
    monkeypatch.setenv("LANDFALL_PREAUTH_REFUSAL_BURST", "3")
    monkeypatch.setenv("LANDFALL_PREAUTH_REFUSALS_PER_SECOND", "0.01")
    monkeypatch.setenv("LANDFALL_TRUSTED_PROXY_HOPS", "1")
    async with running_orchestrator(base_env) as orch:
        await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
        plane = await orch.ok("POST", "/v1/orgs/acme/dataplanes", {"name": "eu-1"}, 201)
        good = {"enrollment_token": plane["enrollment_token"], "public_key": _key(), "version": "1.2.3"}
        guessed = {**good, "enrollment_token": "lfe_" + "x" * 40}

        async def enroll(body: dict[str, str], address: str) -> tuple[int, dict[str, str]]:
            resp = await orch.client.post(
                "/v1/dataplanes/enroll", json=body, headers={"X-Forwarded-For": address}
            )
            return resp.status, dict(resp.headers)

        for _ in range(3):
            assert (await enroll(guessed, "203.0.113.7"))[0] == 401
        status, headers = await enroll(guessed, "203.0.113.7")
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        # the good token from that address waits too, and was not consumed by the refusal
        assert (await enroll(good, "203.0.113.7"))[0] == 429
        assert (await enroll(good, "198.51.100.4"))[0] == 200


@pytest.mark.parametrize(
    ("proxies", "separate"),
    [("127.0.0.1", True), ("10.9.0.0/16", False)],
    ids=["caller-listed", "caller-not-listed"],
)
async def test_a_listed_proxy_such_as_the_console_has_refusals_counted_per_client_it_forwards_for(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, proxies: str, separate: bool
) -> None:
    """The console calls the API from its own address and names the browser in X-Forwarded-For.
    Listed in LANDFALL_TRUSTED_PROXIES (no hops in front), its forwarded address is the key, so one
    key guesser behind it does not lock out everyone else; a caller that is not listed is counted on
    its own address whatever it writes in the header."""
    monkeypatch.setenv("LANDFALL_PREAUTH_REFUSAL_BURST", "3")
    monkeypatch.setenv("LANDFALL_PREAUTH_REFUSALS_PER_SECOND", "0.01")
    monkeypatch.setenv("LANDFALL_TRUSTED_PROXY_HOPS", "0")
    monkeypatch.setenv("LANDFALL_TRUSTED_PROXIES", proxies)
    async with running_orchestrator(base_env) as orch:
        await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
        plane = await orch.ok("POST", "/v1/orgs/acme/dataplanes", {"name": "eu-1"}, 201)
        good = {"enrollment_token": plane["enrollment_token"], "public_key": _key(), "version": "1.2.3"}
        guessed = {**good, "enrollment_token": "lfe_" + "x" * 40}

        async def enroll(body: dict[str, str], browser: str) -> int:
            resp = await orch.client.post(
                "/v1/dataplanes/enroll", json=body, headers={"X-Forwarded-For": browser}
            )
            return resp.status

        for _ in range(3):
            assert await enroll(guessed, "203.0.113.7") == 401
        assert await enroll(guessed, "203.0.113.7") == 429
        assert await enroll(good, "198.51.100.4") == (200 if separate else 429)
