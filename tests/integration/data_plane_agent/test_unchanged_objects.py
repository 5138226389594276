"""A redeploy writes what it changes: the objects beside the workload (Service, pull Secret, env
Secret) are written again only when this deploy changes them, and the workload always. Because a
dependent then keeps the seq of the deploy that last changed it, a removal judges a component by
all its objects: one redelivered after a newer deploy of the same name removes nothing."""

from __future__ import annotations

import json

from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import Harness, seal
from tests.integration.data_plane_agent.test_config_objects import configured, deployed
from tests.support import eventually

CONFIG = {"replicas": 2, "env": {"MODE": "prod"}}
DOCKERCONFIG = json.dumps({"auths": {"registry.example.com": {"auth": "Y2k6cHc="}}}).encode()


async def handled(h: Harness) -> bool:
    """Every command sent to the agent is acknowledged (a removal has no report to wait for)."""
    s = h.subjects
    info = await h.bus.js.consumer_info(s.dataplane_stream.name, s.agent_durable(h.dp))
    return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0


def written(h: Harness, deployment_id: str) -> list[tuple[str, str | None, str | None]]:
    """(method, resource, name) of every write the sandbox saw for one deployment."""
    return [(w.method, w.resource, w.name) for w in h.cluster.writes if w.deployment_id == deployment_id]


async def test_a_new_image_rewrites_the_deployment_alone_and_a_changed_secret_its_secret_too(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        pull = seal(DOCKERCONFIG, h.identity.public_key)
        first = configured(h, "api", CONFIG, version=1, seq=1, secrets={"TOKEN": "a"}, pull_secret=pull)
        await deployed(h, first)
        assert {r for _, r, _ in written(h, first.deployment_id)} >= {"deployments", "services", "secrets"}

        # The same config and secrets, a new image: only the Deployment is written.
        image = "registry.example.com/team/api@sha256:" + "b" * 64
        second = configured(
            h, "api", CONFIG, version=1, seq=2, secrets={"TOKEN": "a"}, pull_secret=pull, image=image
        )
        await deployed(h, second)
        assert written(h, second.deployment_id) == [("PATCH", "deployments", "api")]
        assert h.image_of("api") == image
        service = h.obj("v1", "services", "api")
        assert service is not None  # still there, still saying which deploy last changed it
        assert service["metadata"]["annotations"]["landfall.dev/deployment-id"] == first.deployment_id

        # A changed secret value: the env Secret is written again, with the Deployment; not the rest.
        third = configured(
            h, "api", CONFIG, version=2, seq=3, secrets={"TOKEN": "b"}, pull_secret=pull, image=image
        )
        await deployed(h, third)
        assert sorted(written(h, third.deployment_id)) == [
            ("PATCH", "deployments", "api"),
            ("PATCH", "secrets", "api-env"),
        ]


async def test_a_removal_redelivered_after_a_newer_deploy_of_the_same_name_removes_nothing(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        pull = seal(DOCKERCONFIG, h.identity.public_key)
        await h.deployed("api", seq=10, pull_secret=pull)
        late = h.removal("api", seq=20)
        # Deployed again after the removal was decided (seq 30 > 20), before the removal arrives:
        # the Service and pull Secret are unchanged, so they keep seq 10.
        newer = await h.deployed("api", seq=30, pull_secret=pull)
        await h.send_removal(late)
        await eventually(lambda: handled(h), what="the removal acknowledged by the agent")
        for version, plural, name in (
            ("apps/v1", "deployments", "api"),
            ("v1", "services", "api"),
            ("v1", "secrets", "api-pull"),
        ):
            assert h.obj(version, plural, name) is not None, f"{plural}/{name} was removed"
        dep = h.obj("apps/v1", "deployments", "api")
        assert dep is not None
        assert dep["metadata"]["annotations"]["landfall.dev/deployment-id"] == newer.deployment_id
