"""Each service's own Vault policy and token (libs/devstack/vault_policies.py) against the real OpenBao.

The gateway's token cannot read a registry secret, the credentials token cannot read a signing
secret, neither lists or leaves its subtree; the orchestrator's token writes config secrets and
reads none (not even the ones it wrote), the credentials token reads them and writes none; the stack
hands the agent no Vault token at all. The refusals are checked on the raw API (403 "permission
denied") as well as through `KvStore`, which is what the services use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from libs.devstack.servers import OpenBaoServer
from libs.devstack.servers.plumbing import HttpResponse, http_request
from libs.devstack.stack import Stack, random_ports
from libs.devstack.vault_policies import NO_VAULT, ServiceToken, make_service_tokens, policy_hcl
from libs.runtime.settings import VaultSettings
from libs.runtime.vault import KvStore, VaultUnavailable
from tests.support import settings_from

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix(unique: str) -> str:
    return f"landfall-{unique}"


@pytest.fixture
def tokens(openbao: OpenBaoServer, prefix: str) -> dict[str, ServiceToken]:
    return make_service_tokens(openbao.addr, openbao.token, prefix=prefix)


def kv(openbao: OpenBaoServer, token: str, prefix: str) -> KvStore:
    env = {
        "LANDFALL_VAULT_ADDR": openbao.addr,
        "LANDFALL_VAULT_TOKEN": token,
        "LANDFALL_VAULT_PREFIX": prefix,
    }
    return KvStore(settings_from(VaultSettings, env))


def api(openbao: OpenBaoServer, token: str, method: str, path: str, payload: object = None) -> HttpResponse:
    return http_request(
        method,
        f"{openbao.addr}/v1/{path}",
        body=json.dumps(payload).encode() if payload is not None else None,
        headers={"X-Vault-Token": token, "Content-Type": "application/json"},
    )


def assert_refused(response: HttpResponse) -> None:
    assert response.status == 403, response.body
    assert "permission denied" in response.body.decode()


async def test_the_gateway_reaches_its_signing_secrets_and_no_registry_secret(
    openbao: OpenBaoServer, tokens: dict[str, ServiceToken], prefix: str
) -> None:
    registry_path = f"{prefix}/orgs/acme/registries/reg_1"
    credentials = kv(openbao, tokens["credentials"].token, prefix)
    gateway = kv(openbao, tokens["webhook_gateway"].token, prefix)
    try:
        await credentials.write(registry_path, {"password": "hunter2"})
        signing = gateway.path("gateway", "signing", "acme", "shop", "api")
        assert await gateway.write(signing, {"secret": "whsec_x"}) == 1
        assert await gateway.read(signing) == {"secret": "whsec_x"}
        await gateway.check()  # readiness looks its own token up

        gw_token = tokens["webhook_gateway"].token
        assert_refused(api(openbao, gw_token, "GET", f"secret/data/{registry_path}"))
        assert_refused(api(openbao, gw_token, "POST", f"secret/data/{registry_path}", {"data": {"a": "b"}}))
        assert_refused(api(openbao, gw_token, "DELETE", f"secret/metadata/{registry_path}"))
        assert_refused(api(openbao, gw_token, "LIST", f"secret/metadata/{prefix}/gateway/signing"))
        assert_refused(api(openbao, gw_token, "GET", "sys/policies/acl"))
        with pytest.raises(VaultUnavailable):
            await gateway.read(registry_path)

        await gateway.destroy(signing)
        assert await gateway.read(signing) is None
    finally:
        gateway.close()
        credentials.close()


async def test_the_credentials_token_reaches_only_the_registry_secrets(
    openbao: OpenBaoServer, tokens: dict[str, ServiceToken], prefix: str, unique: str
) -> None:
    credentials = kv(openbao, tokens["credentials"].token, prefix)
    try:
        path = credentials.path("orgs", "acme", "registries", "reg_1")
        first = await credentials.write(path, {"password": "one"})
        second = await credentials.write(path, {"password": "two"})
        assert await credentials.read(path, version=first) == {"password": "one"}
        await credentials.destroy_version(path, second)  # undoing a write whose commit failed
        assert await credentials.read(path, version=second) is None
        await credentials.destroy(path)
        assert await credentials.read(path) is None
        await credentials.check()

        token = tokens["credentials"].token
        assert_refused(api(openbao, token, "GET", f"secret/data/{prefix}/gateway/signing/acme/shop/api"))
        assert_refused(api(openbao, token, "LIST", f"secret/metadata/{prefix}/orgs"))
        # Another prefix (another installation, another test) is outside the policy too.
        other = f"secret/data/landfall-other{unique}/orgs/acme/registries/reg_1"
        assert_refused(api(openbao, token, "POST", other, {"data": {"a": "b"}}))
        assert_refused(api(openbao, token, "POST", "auth/token/create", {"policies": ["root"]}))
    finally:
        credentials.close()


def test_tokens_carry_their_policy_alone_and_the_old_ones_are_revoked(
    openbao: OpenBaoServer, tokens: dict[str, ServiceToken], prefix: str
) -> None:
    for service, made in tokens.items():
        looked = api(openbao, made.token, "GET", "auth/token/lookup-self").json()["data"]
        assert looked["policies"] == [made.policy], service  # not even `default`
        assert looked["orphan"] is True
        assert looked["ttl"] > 0
    again = make_service_tokens(
        openbao.addr, openbao.token, prefix=prefix, revoke=[t.accessor for t in tokens.values()]
    )
    for service in tokens:
        assert api(openbao, tokens[service].token, "GET", "auth/token/lookup-self").status == 403
        assert api(openbao, again[service].token, "GET", "auth/token/lookup-self").status == 200
    # Revoking what is gone already is fine (a second start after a lost Vault).
    make_service_tokens(openbao.addr, openbao.token, prefix=prefix, revoke=[tokens["credentials"].accessor])


async def test_the_orchestrator_writes_config_secrets_it_cannot_read_and_credentials_reads_them(
    openbao: OpenBaoServer, tokens: dict[str, ServiceToken], prefix: str
) -> None:
    orchestrator = kv(openbao, tokens["orchestrator"].token, prefix)
    credentials = kv(openbao, tokens["credentials"].token, prefix)
    try:
        path = orchestrator.path("config", "acme", "shop", "api", "production")
        first = await orchestrator.patch(path, {"DB_PASSWORD": "one", "TOKEN": "t"})  # created
        second = await orchestrator.patch(path, {"DB_PASSWORD": "two", "TOKEN": None, "NEW": "n"})
        assert second == first + 1
        assert await credentials.read(path, version=first) == {"DB_PASSWORD": "one", "TOKEN": "t"}
        assert await credentials.read(path, version=second) == {"DB_PASSWORD": "two", "NEW": "n"}
        await orchestrator.check()

        token = tokens["orchestrator"].token
        assert_refused(api(openbao, token, "GET", f"secret/data/{path}"))
        assert_refused(api(openbao, token, "GET", f"secret/metadata/{path}"))
        assert_refused(api(openbao, token, "LIST", f"secret/metadata/{prefix}/config"))
        assert_refused(api(openbao, token, "GET", f"secret/data/{prefix}/orgs/acme/registries/reg_1"))
        assert_refused(
            api(openbao, token, "POST", f"secret/data/{prefix}/orgs/acme/registries/r", {"data": {"a": "b"}})
        )
        with pytest.raises(VaultUnavailable):
            await orchestrator.read(path)
        # The credentials service reads config secrets and cannot change them.
        assert_refused(api(openbao, tokens["credentials"].token, "POST", f"secret/data/{path}", {"data": {}}))
        assert_refused(api(openbao, tokens["credentials"].token, "DELETE", f"secret/metadata/{path}"))
        with pytest.raises(VaultUnavailable):
            await credentials.patch(path, {"DB_PASSWORD": "mine"})

        await orchestrator.destroy(path)  # a deleted component's secrets go
        assert await credentials.read(path, version=second) is None
    finally:
        orchestrator.close()
        credentials.close()


def test_the_stack_gives_each_vault_user_its_own_token_and_the_agent_none(
    openbao: OpenBaoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = Stack(tmp_path / "stack", ports=random_ports(), persistent_vault=False)
    stack.vault = openbao  # running already: start_infra's start() of it does nothing
    monkeypatch.setattr(stack, "_servers", lambda: {"openbao": openbao})
    stack.start_infra()
    first = dict(stack.vault_tokens)
    assert set(first) == {"credentials", "webhook_gateway", "orchestrator"}
    for service in first:
        env = stack.env(service)
        assert env["LANDFALL_VAULT_TOKEN"] == first[service].token != openbao.token
        assert env["LANDFALL_VAULT_ADDR"] == openbao.addr
    for service in NO_VAULT:
        env = stack.env(service)
        assert not [key for key in env if "VAULT" in key], service
        assert openbao.token not in env.values()
    assert stack.state["vault_token"] == openbao.token  # the operator's, for local.env
    # A second start (make up again) makes new tokens and revokes the first ones.
    stack.start_infra()
    assert api(openbao, first["credentials"].token, "GET", "auth/token/lookup-self").status == 403
    assert stack.env("credentials")["LANDFALL_VAULT_TOKEN"] == stack.vault_tokens["credentials"].token


def test_hvac_stays_in_its_adapter_and_the_agent_has_no_policy() -> None:
    for module in (REPO / "services").rglob("*.py"):
        assert "import hvac" not in module.read_text(), module
    for service in NO_VAULT:
        with pytest.raises(ValueError, match="no Vault policy"):
            policy_hcl(service)
    orchestrator = policy_hcl("orchestrator")
    assert '"read"' not in orchestrator.split("lookup-self")[0]  # write-only below its subtree


def test_the_policy_text_prints_for_an_install() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "libs.devstack.vault_policies", "webhook_gateway", "--prefix", "lf"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    assert out == policy_hcl("webhook_gateway", prefix="lf")
    assert 'path "secret/data/lf/gateway/signing/*"' in out
    assert "orgs" not in out
    assert "list" not in out
