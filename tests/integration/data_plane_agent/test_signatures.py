"""A command not signed by a key the agent pinned changes nothing in the cluster and is reported rejected."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from nacl.signing import SigningKey

from libs.contracts import signing
from libs.contracts.messages import DeployCommand
from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import NAMESPACE, SIGNER, Harness


def _unsigned(cmd: DeployCommand) -> bytes:
    return cmd.encode()


def _other_key(cmd: DeployCommand) -> bytes:
    return signing.sign(cmd, SigningKey.generate()).encode()


def _tampered(cmd: DeployCommand) -> bytes:
    """Signed by the right key, then the image changed on the way."""
    doc = json.loads(signing.sign(cmd, SIGNER).encode())
    doc["image"] = "evil.example.com/miner:latest"
    return json.dumps(doc).encode()


def _key_id_swapped(cmd: DeployCommand) -> bytes:
    """Another key's signature under the pinned key's id."""
    doc = json.loads(signing.sign(cmd, SigningKey.generate()).encode())
    doc["signature"]["key_id"] = signing.key_id(bytes(SIGNER.verify_key))
    return json.dumps(doc).encode()


async def _publish(h: Harness, raw: bytes, msg_id: str) -> None:
    await h.bus.js.publish(h.subjects.deploy(h.dp), raw, headers={"Nats-Msg-Id": msg_id})


@pytest.mark.parametrize(
    ("forge", "says"),
    [
        (_unsigned, "not signed"),
        (_other_key, "has not pinned"),
        (_tampered, "does not match"),
        (_key_id_swapped, "does not match"),
    ],
    ids=["unsigned", "another-key", "tampered-image", "key-id-swapped"],
)
async def test_a_forged_deploy_is_rejected_and_writes_nothing(
    open_harness: OpenHarness, forge: Callable[[DeployCommand], bytes], says: str
) -> None:
    async with open_harness() as h:
        forged = h.command("api")
        await _publish(h, forge(forged), forged.deployment_id)
        report = await h.wait_report(forged.deployment_id)
        assert (report.status, report.reason) == ("failed", "command_rejected")
        assert report.message is not None
        assert says in report.message
        assert h.cluster.get("v1", "namespaces", None, NAMESPACE) is None  # not even the namespace
        assert h.obj("apps/v1", "deployments", "api") is None

        # The agent goes on: the same command, signed, applies.
        genuine = await h.deployed("api", seq=2)
        assert h.image_of("api") == genuine.image


async def test_a_forged_command_naming_kube_system_changes_nothing_there(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        before = h.cluster.get("v1", "namespaces", None, "kube-system")
        forged = h.command("api", namespace="kube-system")
        await h.send(forged, signed=False)
        report = await h.wait_report(forged.deployment_id)
        assert (report.status, report.reason) == ("failed", "command_rejected")
        assert h.cluster.get("apps/v1", "deployments", "kube-system", "api") is None
        assert h.cluster.get("v1", "namespaces", None, "kube-system") == before


async def test_an_unsigned_removal_leaves_the_component_in_place(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        await h.deployed("api")

        await h.send_removal(h.removal("api", seq=5), signed=False)
        # A later signed command is handled after the forged removal (one at a time, in order) ...
        await h.deployed("marker", seq=1)
        # ... and the forged removal took nothing away.
        assert h.obj("apps/v1", "deployments", "api") is not None
        assert h.obj("v1", "services", "api") is not None

        await h.send_removal(h.removal("api", seq=6))  # signed: removes
        removed = await h.deploy("marker2", seq=1)
        await h.wait_report(removed.deployment_id)
        assert h.obj("apps/v1", "deployments", "api") is None


async def test_an_agent_with_no_pinned_key_refuses_every_command(open_harness: OpenHarness) -> None:
    async with open_harness(command_public_keys="") as h:
        cmd = h.command("api")
        await h.send(cmd)  # signed, but this agent pinned nothing to check it against
        report = await h.wait_report(cmd.deployment_id)
        assert (report.status, report.reason) == ("failed", "command_rejected")
        assert report.message is not None
        assert "LANDFALL_COMMAND_PUBLIC_KEYS" in report.message
        assert h.obj("apps/v1", "deployments", "api") is None
