"""The credentials registries API against real NATS, PostgreSQL and OpenBao.

What a user notices: registries are created, listed, renamed, rotated and
deleted as API.md says; bad `auth` is a 422 naming the field; secrets go to
Vault (new version on rotation, every version destroyed on delete) and never
come back in an answer; another org's registry does not exist for you.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import hvac.exceptions
import pytest

from services.credentials.settings import Settings
from tests.integration.credentials.helpers import ORG, OTHER_ORG, REGISTRIES, Harness, running
from tests.support import settings_from

PASSWORD = "pw-Zq8!api-secret-" + "x" * 8
GCP_KEY = {
    "type": "service_account",
    "project_id": "acme-prod",
    "private_key_id": "0123456789abcdef",
    "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",  # noqa: E501
    "client_email": "puller@acme-prod.iam.gserviceaccount.com",
}


def docker_config(host: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {host: {"auth": auth}}}


def basic(host: str = "ghcr.io", username: str = "octo", password: str = PASSWORD) -> dict[str, Any]:
    return {"type": "basic", "host": host, "username": username, "password": password}


# --- create: every auth type --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (
            {"type": "anonymous", "host": "registry.hub.docker.com"},
            {"host": "docker.io", "auth_type": "anonymous", "username": None, "vendor": None},
        ),
        (
            {"type": "anonymous", "host": "https://Index.Docker.io/v1/"},
            {"host": "docker.io", "auth_type": "anonymous"},
        ),
        (
            {"type": "anonymous", "host": "localhost:5000"},
            {"host": "localhost:5000", "auth_type": "anonymous"},
        ),
        (basic(host="GHCR.io", password="ghp_" + "a" * 36), {"host": "ghcr.io", "username": "octo"}),
        (
            {"type": "docker-config", "config": docker_config("https://index.docker.io/v1/", "me", PASSWORD)},
            {"host": "docker.io", "auth_type": "docker-config", "username": "me"},
        ),
        (
            {"type": "docker-config", "config": json.dumps(docker_config("quay.io", "robot", PASSWORD))},
            {"host": "quay.io", "auth_type": "docker-config", "username": "robot"},
        ),
        (
            {"type": "vendor", "host": "myacr.azurecr.io", "vendor": "azure"},
            {"host": "myacr.azurecr.io", "auth_type": "vendor", "vendor": "azure", "username": None},
        ),
        (
            {"type": "vendor", "host": "europe-docker.pkg.dev", "vendor": "gcp"},
            {"host": "europe-docker.pkg.dev", "vendor": "gcp"},
        ),
        (
            {"type": "vendor", "host": "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "vendor": "aws"},
            {"vendor": "aws"},
        ),
    ],
)
async def test_each_auth_type_is_accepted_and_shown_without_its_secret(
    svc: Harness, auth: dict[str, Any], expected: dict[str, Any]
) -> None:
    created = await svc.create({"display_name": "reg", "auth": auth})
    assert created["id"].startswith("reg_")
    for key, value in expected.items():
        assert created[key] == value, key
    assert set(created) == {
        "id",
        "display_name",
        "host",
        "auth_type",
        "username",
        "vendor",
        "warnings",
        "created_at",
        "updated_at",
    }
    assert PASSWORD not in json.dumps(created)

    resp = await svc.client.get(f"{REGISTRIES}/{created['id']}", headers=svc.headers)
    assert resp.status == 200
    assert await resp.json() == created


@pytest.mark.parametrize("helper", [{"credsStore": "desktop"}, {"credHelpers": {"quay.io": "desktop"}}])
async def test_a_docker_config_naming_a_credential_helper_is_refused_for_that(
    svc: Harness, helper: dict[str, Any]
) -> None:
    # Its auths are valid, so the helper is the only reason to refuse it.
    config = {**docker_config("quay.io", "u", PASSWORD), **helper}
    resp = await svc.client.post(
        REGISTRIES,
        json={"display_name": "helper", "auth": {"type": "docker-config", "config": config}},
        headers=svc.headers,
    )
    problem = await resp.json(content_type=None)
    assert resp.status == 422, problem
    assert [(e["field"], "credential helpers" in e["message"]) for e in problem["errors"]] == [
        ("auth.config", True)
    ]
    assert PASSWORD not in json.dumps(problem)
    assert (await (await svc.client.get(REGISTRIES, headers=svc.headers)).json())["items"] == []


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({"host": "ghcr.io"}, "auth.type"),
        ({"type": "oauth", "host": "ghcr.io"}, "auth.type"),
        ({"type": "anonymous"}, "auth.host"),
        ({"type": "anonymous", "host": ""}, "auth.host"),
        ({"type": "anonymous", "host": "not a host!"}, "auth.host"),
        ({"type": "anonymous", "host": "ghcr.io/acme/app"}, "auth.host"),
        ({"type": "anonymous", "host": "localhost:99999"}, "auth.host"),
        ({"type": "anonymous", "host": "ghcr.io", "password": PASSWORD}, "auth.password"),
        ({"type": "basic", "host": "ghcr.io", "username": "octo"}, "auth.password"),
        (basic(password=""), "auth.password"),
        (basic(username=""), "auth.username"),
        (basic(username="a:b"), "auth.username"),
        (basic(host=""), "auth.host"),
        (basic(host="europe-docker.pkg.dev", username="_json_key", password="{not json"), "auth.password"),
        (
            basic(host="gcr.io", username="_json_key", password=json.dumps({"type": "user"})),
            "auth.password",
        ),
        ({"type": "docker-config"}, "auth.config"),
        ({"type": "docker-config", "config": {"auths": {}}}, "auth.config"),
        (
            {
                "type": "docker-config",
                "config": {"auths": {**docker_config("a.io", "u", "p")["auths"], "b.io": {"auth": "eDp5"}}},
            },
            "auth.config",
        ),
        ({"type": "docker-config", "config": '{"auths": '}, "auth.config"),
        ({"type": "docker-config", "config": {"auths": {"quay.io": {"auth": "!!"}}}}, "auth.config"),
        (
            {"type": "docker-config", "config": docker_config("quay.io", "u", PASSWORD), "host": "ghcr.io"},
            "auth.host",
        ),
        ({"type": "vendor", "host": "ghcr.io", "vendor": "azure"}, "auth.host"),
        ({"type": "vendor", "host": "myacr.azurecr.io", "vendor": "gcp"}, "auth.host"),
        ({"type": "vendor", "host": "myacr.azurecr.io", "vendor": "ibm"}, "auth.vendor"),
        ({"type": "vendor", "host": "myacr.azurecr.io"}, "auth.vendor"),
    ],
)
async def test_invalid_auth_is_a_422_naming_the_field(svc: Harness, auth: dict[str, Any], field: str) -> None:
    resp = await svc.client.post(REGISTRIES, json={"display_name": "bad", "auth": auth}, headers=svc.headers)
    text = await resp.text()
    assert resp.status == 422, text
    assert resp.content_type == "application/problem+json"
    problem = json.loads(text)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert all(e["message"] for e in problem["errors"])
    assert PASSWORD not in text
    listed = await (await svc.client.get(REGISTRIES, headers=svc.headers)).json()
    assert listed["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"auth": {"type": "anonymous", "host": "ghcr.io"}}, "display_name"),
        ({"display_name": "  ", "auth": {"type": "anonymous", "host": "ghcr.io"}}, "display_name"),
        ({"display_name": "x" * 101, "auth": {"type": "anonymous", "host": "ghcr.io"}}, "display_name"),
        ({"display_name": "x"}, "auth"),
    ],
)
async def test_display_name_and_auth_are_required(svc: Harness, body: dict[str, Any], field: str) -> None:
    resp = await svc.client.post(REGISTRIES, json=body, headers=svc.headers)
    assert resp.status == 422
    assert field in [e["field"] for e in (await resp.json())["errors"]]


async def test_bodies_that_are_not_json_objects_are_refused_plainly(svc: Harness) -> None:
    resp = await svc.client.post(
        REGISTRIES, data="{", headers={**svc.headers, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    resp = await svc.client.post(REGISTRIES, data="x", headers={**svc.headers, "Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await svc.client.post(REGISTRIES, json=[1], headers=svc.headers)
    assert resp.status == 422


async def test_vendor_rules_warn_and_google_keys_are_minified_in_vault(svc: Harness) -> None:
    ecr = await svc.create(
        {
            "display_name": "ecr",
            "auth": basic(host="123456789012.dkr.ecr.us-east-1.amazonaws.com", username="AWS"),
        }
    )
    assert any("12 hours" in w for w in ecr["warnings"])

    pretty = json.dumps(GCP_KEY, indent=2)
    gar = await svc.create(
        {
            "display_name": "gar",
            "auth": basic(host="europe-docker.pkg.dev", username="_json_key", password=pretty),
        }
    )
    assert gar["username"] == "_json_key"
    stored = svc.vault().secrets.kv.v2.read_secret_version(
        path=svc.vault_path(gar["id"]), mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]
    assert stored["password"] == json.dumps(GCP_KEY, separators=(",", ":"))
    assert stored["host"] == "europe-docker.pkg.dev"


async def test_secrets_go_to_vault_and_anonymous_registries_store_none(svc: Harness) -> None:
    created = await svc.create({"display_name": "ghcr", "auth": basic()})
    stored = svc.vault().secrets.kv.v2.read_secret_version(
        path=svc.vault_path(created["id"]), mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]
    assert stored == {"username": "octo", "password": PASSWORD, "host": "ghcr.io"}

    anon = await svc.create({"display_name": "hub", "auth": {"type": "anonymous", "host": "docker.io"}})
    with pytest.raises(hvac.exceptions.InvalidPath):
        svc.vault().secrets.kv.v2.read_secret_metadata(path=svc.vault_path(anon["id"]), mount_point="secret")


# --- names and tenancy --------------------------------------------------------------------------


async def test_display_names_are_unique_within_an_org(svc: Harness) -> None:
    await svc.create({"display_name": "Production GHCR", "auth": basic()})
    resp = await svc.client.post(
        REGISTRIES,
        json={"display_name": " production ghcr ", "auth": {"type": "anonymous", "host": "ghcr.io"}},
        headers=svc.headers,
    )
    assert resp.status == 409
    problem = await resp.json()
    assert problem["status"] == 409
    assert "production ghcr" in problem["detail"].lower()
    # The refused registry left no secret behind in Vault.
    listed = svc.vault().secrets.kv.v2.list_secrets(path=f"{svc.settings.vault_prefix}/orgs/{ORG}/registries")
    assert len(listed["data"]["keys"]) == 1
    # Another org may use the same name.
    await svc.create({"display_name": "Production GHCR", "auth": basic()}, org=OTHER_ORG)


async def test_another_orgs_registry_does_not_exist(svc: Harness) -> None:
    theirs = await svc.create({"display_name": "theirs", "auth": basic()}, org=OTHER_ORG)
    path = f"{REGISTRIES}/{theirs['id']}"
    assert (await svc.client.get(path, headers=svc.headers)).status == 404
    assert (await svc.client.patch(path, json={"display_name": "mine"}, headers=svc.headers)).status == 404
    assert (await svc.client.post(path + "/test", json={}, headers=svc.headers)).status == 404
    assert (await svc.client.delete(path, headers=svc.headers)).status == 404
    assert (await (await svc.client.get(REGISTRIES, headers=svc.headers)).json())["items"] == []
    # ... and it is untouched.
    mine = await svc.client.get(f"/v1/orgs/{OTHER_ORG}/registries/{theirs['id']}", headers=svc.headers)
    assert (await mine.json())["display_name"] == "theirs"


@pytest.mark.parametrize("bad_id", ["nope", "reg_short", "dep_01hzzzzzzzzzzzzzzzzzzzzzzz", "reg_" + "z" * 26])
async def test_malformed_or_unknown_ids_are_404(svc: Harness, bad_id: str) -> None:
    resp = await svc.client.get(f"{REGISTRIES}/{bad_id}", headers=svc.headers)
    assert resp.status == 404
    assert (await resp.json())["status"] == 404


async def test_invalid_org_names_are_404_and_the_admin_token_is_required(svc: Harness) -> None:
    assert (await svc.client.get("/v1/orgs/Not_An_Org/registries", headers=svc.headers)).status == 404
    resp = await svc.client.get(REGISTRIES)
    assert resp.status == 401
    resp = await svc.client.post(
        REGISTRIES,
        json={"display_name": "x", "auth": basic()},
        headers={"Authorization": "Bearer wrong"},
    )
    assert resp.status == 401
    assert (await (await svc.client.get(REGISTRIES, headers=svc.headers)).json())["items"] == []


# --- PATCH --------------------------------------------------------------------------------------


async def test_patch_with_new_credentials_writes_a_new_vault_version(svc: Harness) -> None:
    created = await svc.create({"display_name": "ghcr", "auth": basic()})
    path = f"{REGISTRIES}/{created['id']}"
    vault = svc.vault()
    meta = vault.secrets.kv.v2.read_secret_metadata(path=svc.vault_path(created["id"]), mount_point="secret")
    assert meta["data"]["current_version"] == 1

    resp = await svc.client.patch(
        path, json={"auth": basic(username="octo2", password="ghp_" + "b" * 36)}, headers=svc.headers
    )
    assert resp.status == 200, await resp.text()
    updated = await resp.json()
    assert updated["username"] == "octo2"
    assert updated["warnings"] == []  # a PAT no longer triggers the GHCR warning
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] > created["updated_at"]
    meta = vault.secrets.kv.v2.read_secret_metadata(path=svc.vault_path(created["id"]), mount_point="secret")
    assert meta["data"]["current_version"] == 2
    latest = vault.secrets.kv.v2.read_secret_version(
        path=svc.vault_path(created["id"]), mount_point="secret", raise_on_deleted_version=True
    )
    assert latest["data"]["data"]["password"] == "ghp_" + "b" * 36

    resp = await svc.client.patch(path, json={"display_name": "GitHub packages"}, headers=svc.headers)
    assert resp.status == 200
    assert (await resp.json())["display_name"] == "GitHub packages"
    meta = vault.secrets.kv.v2.read_secret_metadata(path=svc.vault_path(created["id"]), mount_point="secret")
    assert meta["data"]["current_version"] == 2  # a rename does not touch the secret


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({"type": "anonymous", "host": "ghcr.io"}, "auth.type"),
        ({"type": "docker-config", "config": docker_config("ghcr.io", "octo", PASSWORD)}, "auth.type"),
        (basic(host="quay.io"), "auth.host"),
        (basic(password=""), "auth.password"),
    ],
)
async def test_patch_refuses_another_type_or_host(svc: Harness, auth: dict[str, Any], field: str) -> None:
    created = await svc.create({"display_name": "ghcr", "auth": basic()})
    resp = await svc.client.patch(f"{REGISTRIES}/{created['id']}", json={"auth": auth}, headers=svc.headers)
    assert resp.status == 422
    assert field in [e["field"] for e in (await resp.json())["errors"]]
    meta = svc.vault().secrets.kv.v2.read_secret_metadata(
        path=svc.vault_path(created["id"]), mount_point="secret"
    )
    assert meta["data"]["current_version"] == 1
    again = await (await svc.client.get(f"{REGISTRIES}/{created['id']}", headers=svc.headers)).json()
    assert again == created


async def test_patch_docker_config_rotation_and_rename_conflicts(svc: Harness) -> None:
    quay = await svc.create(
        {
            "display_name": "quay",
            "auth": {"type": "docker-config", "config": docker_config("quay.io", "r1", "p1")},
        }
    )
    await svc.create({"display_name": "other", "auth": basic()})
    path = f"{REGISTRIES}/{quay['id']}"
    resp = await svc.client.patch(
        path,
        json={"auth": {"type": "docker-config", "config": docker_config("quay.io", "r2", "p2")}},
        headers=svc.headers,
    )
    assert resp.status == 200
    assert (await resp.json())["username"] == "r2"
    resp = await svc.client.patch(path, json={"display_name": "OTHER"}, headers=svc.headers)
    assert resp.status == 409
    resp = await svc.client.patch(path, json={}, headers=svc.headers)
    assert resp.status == 422
    resp = await svc.client.patch(
        path,
        json={"auth": {"type": "docker-config", "config": docker_config("ghcr.io", "r3", "p3")}},
        headers=svc.headers,
    )
    assert resp.status == 422
    assert [e["field"] for e in (await resp.json())["errors"]] == ["auth.config"]


# --- DELETE -------------------------------------------------------------------------------------


async def test_delete_destroys_every_version_and_the_row(svc: Harness) -> None:
    created = await svc.create({"display_name": "ghcr", "auth": basic()})
    path = f"{REGISTRIES}/{created['id']}"
    assert (
        await svc.client.patch(path, json={"auth": basic(password="second")}, headers=svc.headers)
    ).status == 200
    vault = svc.vault()
    meta = vault.secrets.kv.v2.read_secret_metadata(path=svc.vault_path(created["id"]), mount_point="secret")
    assert sorted(meta["data"]["versions"]) == ["1", "2"]

    resp = await svc.client.delete(path, headers=svc.headers)
    assert resp.status == 204
    assert svc.orchestrator.asked[-1].registry_id == created["id"]
    assert svc.orchestrator.asked[-1].org == ORG
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.kv.v2.read_secret_metadata(path=svc.vault_path(created["id"]), mount_point="secret")
    assert (await svc.client.get(path, headers=svc.headers)).status == 404
    assert (await svc.client.delete(path, headers=svc.headers)).status == 404


async def test_delete_is_refused_while_components_use_the_registry(svc: Harness) -> None:
    created = await svc.create({"display_name": "ghcr", "auth": basic()})
    svc.orchestrator.usage[created["id"]] = ["shop/api", "shop/worker"]
    path = f"{REGISTRIES}/{created['id']}"
    resp = await svc.client.delete(path, headers=svc.headers)
    assert resp.status == 409
    problem = await resp.json()
    assert "shop/api" in problem["detail"]
    assert "shop/worker" in problem["detail"]
    assert problem["components"] == ["shop/api", "shop/worker"]
    assert (await svc.client.get(path, headers=svc.headers)).status == 200
    meta = svc.vault().secrets.kv.v2.read_secret_metadata(
        path=svc.vault_path(created["id"]), mount_point="secret"
    )
    assert meta["data"]["current_version"] == 1

    svc.orchestrator.usage[created["id"]] = []
    assert (await svc.client.delete(path, headers=svc.headers)).status == 204


async def test_delete_answers_503_when_the_orchestrator_cannot_tell(base_env: dict[str, str]) -> None:
    async with running(settings_from(Settings, base_env, rpc_timeout_seconds=0.5), orchestrator=False) as svc:
        created = await svc.create({"display_name": "ghcr", "auth": basic()})
        path = f"{REGISTRIES}/{created['id']}"
        resp = await svc.client.delete(path, headers=svc.headers)
        assert resp.status == 503
        assert resp.headers["Retry-After"]
        assert "orchestrator" in (await resp.json())["detail"]
        assert (await svc.client.get(path, headers=svc.headers)).status == 200


# --- audit --------------------------------------------------------------------------------------


async def test_changes_are_audited_on_the_shared_trail_without_secrets(svc: Harness) -> None:
    """One event per change on the AUDIT stream (the orchestrator records and serves them);
    a refused delete (409: in use) changed nothing and is not one."""
    created = await svc.create({"display_name": "ghcr", "auth": basic()})
    path = f"{REGISTRIES}/{created['id']}"
    rotated = await svc.client.patch(
        path, json={"auth": basic(password=PASSWORD + "-2")}, headers=svc.headers
    )
    assert rotated.status == 200
    assert (await svc.client.patch(path, json={"display_name": "renamed"}, headers=svc.headers)).status == 200
    svc.orchestrator.usage[created["id"]] = ["shop/api"]
    assert (await svc.client.delete(path, headers=svc.headers)).status == 409
    svc.orchestrator.usage[created["id"]] = []
    assert (await svc.client.delete(path, headers=svc.headers)).status == 204
    other = await svc.create({"display_name": "other", "auth": {"type": "anonymous", "host": "ghcr.io"}})

    events = await svc.audit.wait_for(5)
    assert [(e.action, e.target, e.outcome, e.status) for e in events] == [
        ("registry.create", created["id"], "ok", 201),
        ("registry.update", created["id"], "ok", 200),
        ("registry.update", created["id"], "ok", 200),
        ("registry.delete", created["id"], "ok", 204),
        ("registry.create", other["id"], "ok", 201),
    ]
    assert [e.detail for e in events[:3]] == [
        "basic auth for ghcr.io",
        "new credentials (Vault version 2)",
        "display_name set to 'renamed'",
    ]
    assert {(e.org, e.service, e.actor.type) for e in events} == {(ORG, "credentials", "platform")}
    assert all(e.request_id for e in events)
    assert not [raw for raw in svc.audit.raw if PASSWORD.encode() in raw]
    assert len(await svc.audit.quiet()) == 5


async def test_the_old_audit_routes_are_gone(svc: Harness) -> None:
    """The orchestrator serves `GET /v1/orgs/{org}/audit` for every service now."""
    created = await svc.create({"display_name": "ghcr", "auth": {"type": "anonymous", "host": "ghcr.io"}})
    for path in (f"/v1/orgs/{ORG}/audit", f"{REGISTRIES}/{created['id']}/audit"):
        assert (await svc.client.get(path, headers=svc.headers)).status == 404
    paths = (await (await svc.client.get("/openapi.json")).json())["paths"]
    assert not [p for p in paths if p.endswith("/audit")]


async def test_openapi_documents_the_registry_api(svc: Harness) -> None:
    doc = await (await svc.client.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/v1/orgs/{org}/registries"]) == {"get", "post"}
    assert set(paths["/v1/orgs/{org}/registries/{id}"]) == {"get", "patch", "delete"}
    assert "post" in paths["/v1/orgs/{org}/registries/{id}/test"]
    auth_schema = json.dumps(doc["components"]["schemas"]["RegistryCreate"])
    assert "discriminator" in auth_schema or "oneOf" in auth_schema
    assert "password" not in json.dumps(doc["components"]["schemas"]["RegistryOut"])
