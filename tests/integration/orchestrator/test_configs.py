"""Per-environment config through the orchestrator's API: validation, versions, roles, rollouts,
releases, and secrets that reach the data plane sealed and appear nowhere else.

Real NATS, PostgreSQL and OpenBao. The credentials service's seal of config secrets is its real use
case (`services.credentials.usecases.config_secrets`) served on the test's bus: it reads Vault and
asks this orchestrator for the plane's enrolled key, whose private half the test holds, so it can
open what the data plane would receive.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from nacl.public import PrivateKey, SealedBox
from nats.aio.msg import Msg

from libs.contracts.messages import ConfigSecretsSeal, DeployCommand
from libs.runtime.settings import VaultSettings
from libs.runtime.vault import KvStore
from services.credentials.clients.orchestrator import Orchestrator
from services.credentials.store.secrets import ConfigSecretStore
from services.credentials.usecases.config_secrets import ConfigSecrets
from tests.integration.orchestrator.helpers import (
    DIGEST_1_0,
    IMAGE_1_0,
    IMAGE_1_1,
    PINNED_1_0,
    Harness,
    World,
)
from tests.support import eventually, settings_from

SECRET = "s3cr3t-value-that-must-stay-sealed"
SECRET_2 = "another-s3cr3t-rotated-in"


@pytest.fixture
def kv(base_env: dict[str, str]) -> Iterator[KvStore]:
    store = KvStore(settings_from(VaultSettings, base_env))
    yield store
    store.close()


@pytest.fixture
async def sealer(orch: Harness, kv: KvStore) -> ConfigSecrets:
    """The credentials service's real seal of config secrets, on the test's bus."""
    use_case = ConfigSecrets(secrets=ConfigSecretStore(kv), orchestrator=Orchestrator(orch.bus, timeout=5))
    await orch.bus.serve(
        orch.subjects.rpc_config_secrets_seal, ConfigSecretsSeal, use_case.seal, queue="credentials"
    )
    await orch.bus.nc.flush()
    return use_case


@pytest.fixture
async def everything(orch: Harness) -> list[bytes]:
    """The raw bytes of every message on this test's bus prefix (deploys, RPCs, replies, audit)."""
    seen: list[bytes] = []

    async def keep(msg: Msg) -> None:
        seen.append(msg.subject.encode() + b" " + msg.data)

    await orch.bus.nc.subscribe(">", cb=keep)
    await orch.bus.nc.flush()
    return seen


async def provision(orch: Harness, **kwargs: Any) -> tuple[World, PrivateKey]:
    """A world whose data plane is enrolled with a key the test holds."""
    world = await orch.provision(enroll=False, **kwargs)
    key = PrivateKey.generate()
    world.public_key = base64.b64encode(bytes(key.public_key)).decode()
    await orch.ok(
        "POST",
        "/v1/dataplanes/enroll",
        {"enrollment_token": world.enrollment_token, "public_key": world.public_key, "version": "test"},
    )
    return world, key


def config_path(world: World, environment: str = "development") -> str:
    return f"{world.component_path}/environments/{environment}/config"


def opened(command: DeployCommand, key: PrivateKey) -> dict[str, str]:
    assert command.secrets is not None
    plain = SealedBox(key).decrypt(base64.b64decode(command.secrets.ciphertext))
    result: dict[str, str] = json.loads(plain)
    return result


async def running(orch: Harness, world: World) -> str:
    """Something succeeded in development: the deployment id."""
    deployment_id = await orch.roll_out(world, IMAGE_1_0)
    await orch.report(world, deployment_id, "succeeded")
    await orch.wait_status(deployment_id, "succeeded")
    return deployment_id


# --- reading, writing, versions ---------------------------------------------------------------


async def test_a_never_configured_environment_answers_the_defaults_at_version_0(orch: Harness) -> None:
    world = await orch.provision()
    config = await orch.ok("GET", config_path(world))
    assert config["version"] == 0
    assert config["secret_names"] == []
    assert config["replicas"] is None
    assert config["env"] == {}
    assert config["auto_rollback"] is False
    status, problem, _ = await orch.call("GET", config_path(world, "nowhere"))
    assert status == 404, problem


async def test_put_stores_versions_replaces_fields_and_keeps_absent_secrets(orch: Harness) -> None:
    world = await orch.provision()
    first = await orch.ok(
        "PUT",
        config_path(world),
        {
            "replicas": 2,
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            "env": {"LOG_LEVEL": "debug"},
            "secrets": {"DB_PASSWORD": SECRET, "API_TOKEN": "tok"},
            "probes": {"readiness": {"path": "/healthz", "period_seconds": 5}},
        },
    )
    assert first["version"] == 1
    assert first["secret_names"] == ["API_TOKEN", "DB_PASSWORD"]
    assert first["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert "deployment_id" not in first or first["deployment_id"] is None  # nothing runs there yet

    # Every field but secrets is replaced: replicas and probes go; an absent secret stays.
    second = await orch.ok(
        "PUT", config_path(world), {"env": {"LOG_LEVEL": "info"}, "secrets": {"API_TOKEN": None}}
    )
    assert second["version"] == 2
    assert second["replicas"] is None
    assert second["probes"] is None
    assert second["secret_names"] == ["DB_PASSWORD"]

    # The same again changes nothing: the current version, no new one.
    again = await orch.ok(
        "PUT", config_path(world), {"env": {"LOG_LEVEL": "info"}, "secrets": {"GONE": None}}
    )
    assert again["version"] == 2
    assert await orch.ok("GET", config_path(world)) == {**second, "deployment_id": None}
    # A GET answer can be sent back as it is.
    assert (await orch.ok("PUT", config_path(world), await orch.ok("GET", config_path(world))))[
        "version"
    ] == 2
    # Other environments are their own.
    assert (await orch.ok("GET", config_path(world, "staging")))["version"] == 0


BAD_BODIES = [
    ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu", "Kubernetes quantity"),
    ({"resources": {"limits": {"memory": "1 GB"}}}, "resources.limits.memory", "Kubernetes quantity"),
    ({"env": {"1BAD": "x"}}, "env.1BAD", "variable name"),
    ({"secrets": {"has-dash": "x"}}, "secrets.has-dash", "variable name"),
    ({"secrets": {"BIG": "x" * (32 * 1024 + 1)}}, "secrets.BIG", "longer than"),
    ({"secrets": {f"S{i}": "x" for i in range(101)}}, "secrets", "100"),
    ({"replicas": 101}, "replicas", "100"),
    ({"replicas": -1}, "replicas", "0"),
    ({"probes": {"liveness": {"path": "healthz"}}}, "probes.liveness.path", "HTTP path"),
    ({"probes": {"readiness": {"path": "/ok", "port": 70000}}}, "probes.readiness.port", "65535"),
    (
        {"autoscaling": {"min_replicas": 3, "max_replicas": 2, "target_cpu_percent": 80}},
        "autoscaling",
        "at least",
    ),
    ({"ingress": {"host": "shop.example.com"}}, "ingress", "only for web-application"),
    ({"replica": 2}, "replica", "xtra"),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD_BODIES)
async def test_a_bad_config_answers_422_naming_the_field_and_stores_nothing(
    orch: Harness, body: dict[str, Any], field: str, message: str
) -> None:
    world = await orch.provision()
    status, problem, _ = await orch.call("PUT", config_path(world), body)
    assert status == 422, problem
    assert problem["errors"][0]["field"] == field, problem
    assert message in problem["errors"][0]["message"], problem
    assert (await orch.ok("GET", config_path(world)))["version"] == 0


async def test_a_web_application_checks_its_ingress_host_and_a_task_may_not_have_replicas(
    orch: Harness,
) -> None:
    web = await orch.provision(component_type="web-application")
    status, problem, _ = await orch.call("PUT", config_path(web), {"ingress": {"host": "Bad_Host"}})
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "ingress.host", problem
    assert "DNS name" in problem["errors"][0]["message"]
    ok = await orch.ok(
        "PUT", config_path(web), {"ingress": {"host": "shop.example.com", "tls_secret": "shop-tls"}}
    )
    assert ok["ingress"] == {"host": "shop.example.com", "path": "/", "tls_secret": "shop-tls"}

    task = await orch.provision(
        org="tasks", component_type="scheduled-task", extra={"schedule": "0 3 * * *", "timezone": "UTC"}
    )
    for body, field in (({"replicas": 2}, "replicas"), ({"probes": {"readiness": {"path": "/"}}}, "probes")):
        status, problem, _ = await orch.call("PUT", config_path(task), body)
        assert status == 422, problem
        assert problem["errors"][0]["field"] == field, problem
    assert (await orch.ok("PUT", config_path(task), {"resources": {"limits": {"cpu": "1"}}}))["version"] == 1


async def test_racing_changes_each_get_their_own_version(orch: Harness) -> None:
    world = await orch.provision()
    bodies = [{"env": {"N": str(i)}, "secrets": {f"S{i}": f"v{i}"}} for i in range(6)]
    answers = await asyncio.gather(*(orch.ok("PUT", config_path(world), body) for body in bodies))
    assert sorted(a["version"] for a in answers) == list(range(1, 7))
    final = await orch.ok("GET", config_path(world))
    assert final["version"] == 6
    assert final["secret_names"] == [f"S{i}" for i in range(6)]  # none lost between Vault and the rows


async def test_roles_and_tenancy(orch: Harness) -> None:
    world = await orch.provision()
    viewer = (await orch.api_key(world.org, "viewer"))["key"]
    developer = (await orch.api_key(world.org, "developer"))["key"]
    await orch.provision(org="other")
    stranger = (await orch.api_key("other", "owner"))["key"]

    assert (await orch.call("GET", config_path(world), token=viewer))[0] == 200
    status, problem, _ = await orch.call("PUT", config_path(world), {"replicas": 2}, token=viewer)
    assert status == 403, problem
    assert "developer" in problem["detail"], problem
    assert (await orch.call("PUT", config_path(world), {"replicas": 2}, token=developer))[0] == 200
    for method in ("GET", "PUT"):
        status, _, _ = await orch.call(method, config_path(world), {"replicas": 3}, token=stranger)
        assert status == 404
    assert (await orch.ok("GET", config_path(world)))["replicas"] == 2


async def test_the_openapi_document_says_who_may_call_the_config_routes(orch: Harness) -> None:
    document = await orch.ok("GET", "/openapi.json")
    path = document["paths"][
        "/v1/orgs/{org}/projects/{project}/components/{component}/environments/{environment}/config"
    ]
    assert path["get"]["x-landfall-auth"] == "viewer"
    assert path["put"]["x-landfall-auth"] == "developer"
    assert path["put"]["x-landfall-action"] == "config.update"


# --- secrets stay sealed ----------------------------------------------------------------------


async def test_secrets_reach_the_data_plane_sealed_and_appear_nowhere_else(
    orch: Harness,
    sealer: ConfigSecrets,
    everything: list[bytes],
    base_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    world, key = await provision(orch)
    await running(orch, world)

    answer = await orch.ok(
        "PUT", config_path(world), {"env": {"MODE": "x"}, "secrets": {"DB_PASSWORD": SECRET}}
    )
    assert answer["secret_names"] == ["DB_PASSWORD"]
    command = await orch.command_for(answer["deployment_id"])
    assert opened(command, key) == {"DB_PASSWORD": SECRET}
    assert command.secret_names == ["DB_PASSWORD"]
    assert command.config is not None
    assert command.config.env == {"MODE": "x"}

    # A change of the secret alone rolls out again, and the data plane gets the new value.
    rotated = await orch.ok(
        "PUT", config_path(world), {"env": {"MODE": "x"}, "secrets": {"DB_PASSWORD": SECRET_2}}
    )
    assert rotated["version"] == answer["version"] + 1
    deployment = await orch.deployment(rotated["deployment_id"])
    assert deployment["source"] == "config"
    assert deployment["config_version"] == rotated["version"]
    assert opened(await orch.command_for(rotated["deployment_id"]), key) == {"DB_PASSWORD": SECRET_2}

    audit = await orch.audited(world.org, "the config change", action="config.update", outcome="ok")
    assert "DB_PASSWORD" in audit["detail"]

    values = (SECRET, SECRET_2)
    seen: dict[str, str] = {
        "GET answer": json.dumps(await orch.ok("GET", config_path(world))),
        "history": json.dumps(await orch.ok("GET", f"{world.component_path}/deployments")),
        "audit": json.dumps(await orch.audit(world.org, "?limit=200")),
        "bus": b"\n".join(everything).decode(errors="replace"),
        "logs": "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records),
    }
    conn = await asyncpg.connect(base_env["LANDFALL_DATABASE_URL"])
    try:
        schema = "orchestrator_" + base_env["LANDFALL_SCHEMA_SUFFIX"].lstrip("_")
        for table in ("environment_configs", "deployments", "audit_events"):
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{schema}".{table} t')
            seen[f"table {table}"] = "\n".join(r["row"] for r in rows)
    finally:
        await conn.close()
    assert "DB_PASSWORD" in seen["table environment_configs"]
    assert seen["bus"]
    assert seen["logs"]
    for where, text in seen.items():
        for value in values:
            assert value not in text, f"a secret's value in the {where}"


async def test_deleting_the_component_destroys_its_config_secrets_in_vault(
    orch: Harness, sealer: ConfigSecrets, kv: KvStore
) -> None:
    world, _ = await provision(orch)
    await orch.ok("PUT", config_path(world), {"secrets": {"TOKEN": SECRET}})
    path = kv.path("config", world.org, world.project, world.component, "development")
    assert await kv.read(path) == {"TOKEN": SECRET}
    await orch.ok("DELETE", world.component_path, expect=204)
    assert await kv.read(path) is None


# --- rollouts and releases --------------------------------------------------------------------


async def test_a_config_change_rolls_out_the_running_image_by_digest(orch: Harness) -> None:
    world = await orch.provision()
    before = await running(orch, world)
    answer = await orch.ok("PUT", config_path(world), {"replicas": 3, "env": {"FEATURE": "on"}})
    deployment = await orch.deployment(answer["deployment_id"])
    assert deployment["source"] == "config"
    assert deployment["config_version"] == answer["version"] == 1
    assert deployment["digest"] == DIGEST_1_0
    command = await orch.command_for(answer["deployment_id"])
    assert command.image == PINNED_1_0
    assert command.config is not None
    assert command.config.replicas == 3
    assert command.config_version == 1
    assert command.env["FEATURE"] == "on"  # merged over the component's env
    assert command.secrets is None
    assert command.secret_names == []
    history = await orch.ok("GET", f"{world.component_path}/deployments")
    assert [(d["id"], d["source"], d["config_version"]) for d in history["items"][:2]] == [
        (answer["deployment_id"], "config", 1),
        (before, "webhook", None),
    ]
    # The next webhook deploy runs with the current config too.
    pushed = await orch.push(world, IMAGE_1_0)
    assert (await orch.command_for(pushed)).config_version == 1


async def test_a_promotion_carries_the_image_into_the_target_environments_config(orch: Harness) -> None:
    world = await orch.provision()
    await orch.ok("PUT", config_path(world, "development"), {"replicas": 1, "env": {"WHERE": "dev"}})
    staging = await orch.ok(
        "PUT", config_path(world, "staging"), {"replicas": 4, "env": {"WHERE": "staging"}}
    )
    await running(orch, world)
    promoted = await orch.ok(
        "POST", f"{world.component_path}/promotions", {"from": "development", "to": "staging"}, 202
    )
    assert promoted["config_version"] == staging["version"]
    assert any("config of staging" in note for note in promoted["notes"]), promoted
    command = await orch.command_for(promoted["id"])
    assert command.environment == "staging"
    assert command.image == PINNED_1_0
    assert command.config is not None
    assert command.config.replicas == 4
    assert command.env["WHERE"] == "staging"


async def test_redeploying_an_earlier_image_brings_the_current_config(orch: Harness) -> None:
    world = await orch.provision()
    old = await running(orch, world)
    newer = await orch.roll_out(world, IMAGE_1_1)
    await orch.report(world, newer, "succeeded")
    await orch.wait_status(newer, "succeeded")
    current = await orch.ok("PUT", config_path(world), {"env": {"NOW": "yes"}})
    await orch.report(world, current["deployment_id"], "succeeded")
    await orch.wait_status(current["deployment_id"], "succeeded")

    redeploy = await orch.ok(
        "POST",
        f"{world.component_path}/deployments",
        {"image": PINNED_1_0},
        202,
    )
    assert redeploy["source"] == "rollback"
    assert redeploy["config_version"] == current["version"]
    assert any("current config" in note for note in redeploy["notes"]), redeploy
    command = await orch.command_for(redeploy["id"])
    assert command.env["NOW"] == "yes"
    assert (await orch.deployment(old))["config_version"] is None

    async def gateway_saw_it() -> bool | None:
        views = [c.deployment for c in orch.changes if c.deployment.id == redeploy["id"]]
        return True if views and views[-1].config_version == current["version"] else None

    await eventually(gateway_saw_it, what="the gateway's view with the config version")
