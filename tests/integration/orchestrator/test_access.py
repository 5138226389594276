"""Org API keys on the orchestrator: create, list, revoke, roles, org scoping, the look-up RPC."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg

from libs.contracts.identity import ApiKeyInfo, ApiKeyLookup, ApiKeyRevoked
from libs.contracts.ids import new_id
from libs.contracts.tokens import API_KEY, CI_TOKEN, token_hash
from libs.runtime.bus import RpcFailed
from libs.runtime.service import POOL
from tests.integration.orchestrator.helpers import IMAGE_1_0, Harness
from tests.support import eventually

IMAGE = IMAGE_1_0


async def test_keys_are_shown_once_listed_without_the_key_and_revoked_at_once(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    created = await orch.api_key("acme", "owner", name="laptop")
    key = created["key"]
    assert API_KEY.well_formed(key)
    assert key.startswith("lfk_")
    assert key.startswith(created["key_prefix"])
    assert created["id"].startswith("key_")
    assert (created["name"], created["role"], created["expires_at"]) == ("laptop", "owner", None)
    await orch.call("GET", "/v1/orgs/acme", expect=200, token=key)

    status, problem, _ = await orch.call(
        "POST", "/v1/orgs/acme/api-keys", {"name": "laptop", "role": "viewer"}
    )
    assert status == 409, problem
    status, problem, _ = await orch.call("POST", "/v1/orgs/acme/api-keys", {"name": "x", "role": "admin"})
    assert status == 422, problem
    status, problem, _ = await orch.call("POST", "/v1/orgs/nope/api-keys", {"name": "x", "role": "viewer"})
    assert status == 404, problem

    expiring = await orch.ok(
        "POST", "/v1/orgs/acme/api-keys", {"name": "ci", "role": "viewer", "expires_in_days": 30}, 201
    )
    assert expiring["expires_at"] is not None
    status, listed, _ = await orch.call("GET", "/v1/orgs/acme/api-keys", token=key)
    assert status == 200, listed
    assert [k["id"] for k in listed["items"]] == [expiring["id"], created["id"]]
    assert all("key" not in k for k in listed["items"])
    assert key not in str(listed)
    assert expiring["key"] not in str(listed)

    revocations: list[ApiKeyRevoked] = []

    async def on_revoked(msg: Msg) -> None:
        revocations.append(ApiKeyRevoked.model_validate_json(msg.data))

    await orch.bus.nc.subscribe(orch.subjects.apikeys_revoked, cb=on_revoked)
    await orch.bus.nc.flush()
    await orch.call("DELETE", f"/v1/orgs/acme/api-keys/{created['id']}", expect=204, token=key)
    status, problem, headers = await orch.call("GET", "/v1/orgs/acme", token=key)
    assert status == 401, problem
    assert "revoked" in problem["detail"]
    assert "Bearer" in headers["WWW-Authenticate"]

    async def announced() -> bool:
        return bool(revocations)

    await eventually(announced, what="the revocation broadcast")
    assert revocations == [ApiKeyRevoked(key_id=created["id"], org="acme")]

    listed = await orch.ok("GET", "/v1/orgs/acme/api-keys")
    assert next(k for k in listed["items"] if k["id"] == created["id"])["revoked_at"] is not None
    # revoking again is allowed (a retry after a lost broadcast announces it again)
    await orch.call("DELETE", f"/v1/orgs/acme/api-keys/{created['id']}", expect=204)
    await orch.call("DELETE", f"/v1/orgs/acme/api-keys/{new_id('key')}", expect=404)
    await orch.call("DELETE", "/v1/orgs/acme/api-keys/not-an-id", expect=404)
    # a revoked key's name may be used again
    await orch.api_key("acme", "owner", name="laptop")


async def test_another_orgs_key_id_is_not_found(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    await orch.ok("POST", "/v1/orgs", {"name": "beta"}, 201)
    acme = await orch.api_key("acme")
    beta_owner = (await orch.api_key("beta"))["key"]
    status, problem, _ = await orch.call("DELETE", f"/v1/orgs/beta/api-keys/{acme['id']}", token=beta_owner)
    assert status == 404, problem
    await orch.call("DELETE", f"/v1/orgs/beta/api-keys/{acme['id']}", expect=404)  # not even the platform
    await orch.call("GET", "/v1/orgs/acme", expect=200, token=acme["key"])


async def test_an_expired_key_is_refused(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    created = await orch.api_key("acme", "viewer")
    pool = orch.client.app[POOL]
    await pool.execute(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", created["id"]
    )
    status, problem, _ = await orch.call("GET", "/v1/orgs/acme", token=created["key"])
    assert status == 401, problem
    assert "expired" in problem["detail"]


async def test_roles_decide_what_a_key_may_do(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    await orch.ok("POST", "/v1/orgs", {"name": "beta"}, 201)
    viewer = (await orch.api_key("acme", "viewer"))["key"]
    developer = (await orch.api_key("acme", "developer"))["key"]
    owner = (await orch.api_key("acme", "owner"))["key"]

    await orch.call("GET", "/v1/orgs/acme/projects", expect=200, token=viewer)
    await orch.call("GET", "/v1/orgs/acme/audit", expect=200, token=viewer)
    status, problem, _ = await orch.call("POST", "/v1/orgs/acme/projects", {"name": "shop"}, token=viewer)
    assert status == 403, problem
    assert "developer" in problem["detail"]
    await orch.call("POST", "/v1/orgs/acme/projects", {"name": "shop"}, expect=201, token=developer)

    status, problem, _ = await orch.call("POST", "/v1/orgs/acme/dataplanes", {"name": "eu"}, token=developer)
    assert status == 403, problem
    assert "owner" in problem["detail"]
    status, problem, _ = await orch.call(
        "POST", "/v1/orgs/acme/api-keys", {"name": "mine", "role": "owner"}, token=developer
    )
    assert status == 403, problem
    plane = await orch.call("POST", "/v1/orgs/acme/dataplanes", {"name": "eu"}, expect=201, token=owner)
    envs = "/v1/orgs/acme/environments"
    env = {"name": "dev", "dataplane_id": plane[1]["id"], "order": 1}
    await orch.call("POST", envs, env, expect=403, token=developer)
    await orch.call("POST", envs, env, expect=201, token=owner)

    # another org's path answers exactly as an unknown org would
    status, problem, _ = await orch.call("GET", "/v1/orgs/beta/projects", token=owner)
    unknown_status, unknown, _ = await orch.call("GET", "/v1/orgs/gamma/projects")
    assert (status, unknown_status) == (404, 404), (problem, unknown)
    assert problem["detail"] == unknown["detail"].replace("gamma", "beta")
    # only the platform creates orgs; CI tokens and bad keys reach nothing here
    status, problem, _ = await orch.call("POST", "/v1/orgs", {"name": "mine"}, token=owner)
    assert status == 403, problem
    await orch.call("GET", "/v1/orgs/acme", expect=403, token=CI_TOKEN.generate())
    await orch.call("GET", "/v1/orgs/acme", expect=401, token=API_KEY.generate())
    await orch.call("GET", "/v1/orgs/acme", expect=401, token=None)


async def test_a_deployment_is_visible_only_to_its_own_orgs_keys(orch: Harness) -> None:
    world = await orch.provision(org="acme")
    await orch.ok("POST", "/v1/orgs", {"name": "beta"}, 201)
    acme = (await orch.api_key("acme", "viewer"))["key"]
    beta = (await orch.api_key("beta", "owner"))["key"]
    deployment_id = await orch.push(world, IMAGE)
    await orch.wait_status(deployment_id, "dispatched")

    status, body, _ = await orch.call("GET", f"/v1/deployments/{deployment_id}", token=acme)
    assert status == 200, body
    assert body["org"] == "acme"
    status, problem, _ = await orch.call("GET", f"/v1/deployments/{deployment_id}", token=beta)
    unknown = new_id("dep")
    _, missing, _ = await orch.call("GET", f"/v1/deployments/{unknown}", token=beta)
    assert status == 404, problem
    assert problem["detail"] == missing["detail"].replace(unknown, deployment_id)
    await orch.call("GET", f"/v1/deployments/{deployment_id}", expect=200)  # the platform sees every org


async def test_a_component_takes_only_its_own_orgs_registry_and_data_plane(orch: Harness) -> None:
    await orch.provision(org="acme")
    await orch.ok("POST", "/v1/orgs", {"name": "beta"}, 201)
    await orch.ok("POST", "/v1/orgs/beta/projects", {"name": "shop"}, 201)
    beta = (await orch.api_key("beta", "owner"))["key"]
    acme_registry = orch.credentials.add_registry("acme")
    acme_plane = (await orch.ok("GET", "/v1/orgs/acme/dataplanes"))["items"][0]["id"]

    component = {"name": "api", "type": "service", "registry_id": acme_registry, "image": IMAGE}
    status, problem, _ = await orch.call(
        "POST", "/v1/orgs/beta/projects/shop/components", component, token=beta
    )
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "registry_id"
    env = {"name": "dev", "dataplane_id": acme_plane, "order": 1}
    status, problem, _ = await orch.call("POST", "/v1/orgs/beta/environments", env, token=beta)
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "dataplane_id"
    status, problem, _ = await orch.call("GET", f"/v1/orgs/beta/dataplanes/{acme_plane}", token=beta)
    assert status == 404, problem


async def test_other_services_look_keys_up_over_the_bus(orch: Harness) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    created = await orch.api_key("acme", "developer", name="robot")
    subject = orch.subjects.rpc_apikey_lookup

    async def lookup(digest: str) -> ApiKeyInfo:
        return await orch.bus.request(subject, ApiKeyLookup(key_sha256=digest), ApiKeyInfo, timeout=2)

    info = await lookup(token_hash(created["key"]).hex())
    assert (info.id, info.org, info.name, info.role, info.revoked) == (
        created["id"],
        "acme",
        "robot",
        "developer",
        False,
    )
    assert info.key_prefix == created["key_prefix"]
    assert created["key"] not in info.model_dump_json()
    for digest in (token_hash(API_KEY.generate()).hex(), "not hex"):
        with pytest.raises(RpcFailed) as refused:
            await lookup(digest)
        assert refused.value.error.code == "not_found"
    await orch.call("DELETE", f"/v1/orgs/acme/api-keys/{created['id']}", expect=204)
    assert (await lookup(token_hash(created["key"]).hex())).revoked


async def test_many_keys_checked_at_once(orch: Harness) -> None:
    """Concurrent first uses of a key share nothing wrong: every one is answered, none trusted wrongly."""
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    key = (await orch.api_key("acme", "viewer"))["key"]
    answers = await asyncio.gather(*(orch.call("GET", "/v1/orgs/acme", token=key) for _ in range(20)))
    assert {status for status, _, _ in answers} == {200}
