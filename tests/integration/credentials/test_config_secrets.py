"""The credentials service seals an environment's config secrets to a data plane (rpc
`config-secrets.seal`): real NATS and OpenBao; the orchestrator (which wrote the values, write-only)
is played by `FakeOrchestrator`, which says which key each plane enrolled."""

from __future__ import annotations

import base64
import json

import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from libs.contracts.messages import ConfigSecretsReply, ConfigSecretsSeal
from libs.runtime.vault import KvStore
from services.credentials.settings import Settings
from tests.integration.credentials.helpers import ORG, Harness

PLANE = "dp_config"


@pytest.fixture
def kv(settings: Settings) -> KvStore:
    return KvStore(settings)


async def ask(
    svc: Harness,
    version: int,
    *,
    plane: str = PLANE,
    environment: str = "production",
    names: list[str] | None = None,
) -> ConfigSecretsReply:
    return await svc.bus.request(
        svc.bus.subjects.rpc_config_secrets_seal,
        ConfigSecretsSeal(
            org=ORG,
            project="shop",
            component="api",
            environment=environment,
            version=version,
            dataplane_id=plane,
            names=names or [],
        ),
        ConfigSecretsReply,
        timeout=10,
    )


def enroll(svc: Harness) -> PrivateKey:
    key = PrivateKey.generate()
    svc.orchestrator.plane_keys[(ORG, PLANE)] = base64.b64encode(bytes(key.public_key)).decode()
    return key


async def test_the_pinned_version_is_sealed_to_the_enrolled_key_only(svc: Harness, kv: KvStore) -> None:
    key = enroll(svc)
    path = kv.path("config", ORG, "shop", "api", "production")
    first = await kv.patch(path, {"DB_PASSWORD": "one", "TOKEN": "t"})
    second = await kv.patch(path, {"DB_PASSWORD": "two", "TOKEN": None})

    for version, values in ((first, {"DB_PASSWORD": "one", "TOKEN": "t"}), (second, {"DB_PASSWORD": "two"})):
        reply = await ask(svc, version)
        assert reply.reason == "sealed"
        assert reply.names == sorted(values)
        assert reply.sealed is not None
        ciphertext = base64.b64decode(reply.sealed.ciphertext)
        assert json.loads(SealedBox(key).decrypt(ciphertext)) == values
        with pytest.raises(CryptoError):  # nobody else's key opens it
            SealedBox(PrivateKey.generate()).decrypt(ciphertext)
        assert b"one" not in reply.model_dump_json().encode()
    # Only the names the config version records: a value a failed request left there stays put.
    only = await ask(svc, first, names=["TOKEN", "NOT_THERE"])
    assert only.names == ["TOKEN"]
    assert only.sealed is not None
    assert json.loads(SealedBox(key).decrypt(base64.b64decode(only.sealed.ciphertext))) == {"TOKEN": "t"}
    kv.close()


async def test_no_enrolled_key_a_gone_version_and_no_secrets(svc: Harness, kv: KvStore) -> None:
    path = kv.path("config", ORG, "shop", "api", "staging")
    version = await kv.patch(path, {"A": "a"})
    svc.orchestrator.plane_keys[(ORG, PLANE)] = None  # created, not enrolled
    assert (await ask(svc, version, environment="staging")).reason == "not_enrolled"
    assert (await ask(svc, version, plane="dp_unknown", environment="staging")).reason == "not_enrolled"

    enroll(svc)
    assert (await ask(svc, version + 5, environment="staging")).reason == "not_found"
    emptied = await kv.patch(path, {"A": None})
    assert await ask(svc, emptied, environment="staging") == ConfigSecretsReply(reason="empty")
    await kv.destroy(path)
    assert (await ask(svc, version, environment="staging")).reason == "not_found"
    kv.close()
