"""The orchestrator signs every command it publishes, with the key it announces at enrollment."""

from __future__ import annotations

import base64

from nacl.signing import SigningKey
from pydantic import SecretStr

from libs.contracts import signing
from libs.contracts.messages import DeployCommand, RemoveCommand, command_kind
from tests.integration.orchestrator.helpers import (
    COMMAND_SEED,
    DIGEST_1_0,
    IMAGE_1_0,
    Harness,
    World,
    running_orchestrator,
)
from tests.support import eventually

IMAGE = IMAGE_1_0


async def _enroll(orch: Harness, world: World) -> dict[str, object]:
    body = {"enrollment_token": world.enrollment_token, "public_key": world.public_key, "version": "t"}
    reply: dict[str, object] = await orch.ok("POST", "/v1/dataplanes/enroll", body)
    return reply


async def test_every_deploy_and_removal_is_signed_by_the_key_the_enrollment_announced(orch: Harness) -> None:
    world = await orch.provision(enroll=False, auth_type="anonymous")
    enrolled = await _enroll(orch, world)
    ours = signing.public_key_b64(signing.signing_key(COMMAND_SEED))
    assert enrolled["command_keys"] == [ours]  # no rotation configured: the current key only

    deployment_id = await orch.push(world, IMAGE)
    await orch.wait_status(deployment_id, "dispatched")
    assert (await orch.call("DELETE", world.component_path))[0] == 204

    def wire(kind: str) -> list[bytes]:
        return [raw for raw in orch.wire if command_kind(raw) == kind and world.dataplane_id.encode() in raw]

    async def both() -> bool:
        return bool(wire("deploy")) and bool(wire("remove"))

    await eventually(both, what="a deploy and a removal on the data plane's subject")
    keys = [ours]
    for raw in wire("deploy") + wire("remove"):
        assert signing.refusal(raw, keys) is None
        model = (RemoveCommand if command_kind(raw) == "remove" else DeployCommand).model_validate_json(raw)
        assert model.signature is not None
        assert model.signature.key_id == signing.key_id(base64.b64decode(ours))
    # ... and not by any other key
    assert signing.refusal(wire("deploy")[0], [signing.public_key_b64(SigningKey.generate())]) is not None


async def test_while_rotating_the_enrollment_announces_the_next_key_too(base_env: dict[str, str]) -> None:
    upcoming = SigningKey.generate()
    async with running_orchestrator(
        base_env, command_next_public_key=signing.public_key_b64(upcoming)
    ) as orch:
        world = await orch.provision(enroll=False, auth_type="anonymous")
        enrolled = await _enroll(orch, world)
        current = signing.public_key_b64(signing.signing_key(COMMAND_SEED))
        assert enrolled["command_keys"] == [current, signing.public_key_b64(upcoming)]

    # Then the seed is switched to the next key: the same agents accept what it signs.
    async with running_orchestrator(
        base_env, command_signing_seed=SecretStr(base64.b64encode(bytes(upcoming)).decode())
    ) as orch:
        orch.credentials.add_tag("1.0", DIGEST_1_0)
        world = await orch.provision(org="after", enroll=False, auth_type="anonymous")
        assert (await _enroll(orch, world))["command_keys"] == [signing.public_key_b64(upcoming)]
        await orch.wait_status(await orch.push(world, IMAGE), "dispatched")
        (raw,) = [r for r in orch.wire if world.dataplane_id.encode() in r]
        assert signing.refusal(raw, [current, signing.public_key_b64(upcoming)]) is None
        assert signing.refusal(raw, [current]) is not None
