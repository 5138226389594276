"""The agent across outages: the Kubernetes API gone and back, the agent itself stopped and restarted.

Order beats latency: with the API server unreachable a command is held where it is (not
failed, not redelivered past), every later command of its component waits behind it, and
once the API returns each component's commands are applied in the order they were sent,
deploys and removals alike (components are applied concurrently, each in its own order).
After the agent's own outage it catches up from its durable consumer, again in order
and without writing any deployment twice. The evidence is the sandbox's request log (every
write the API server answered) and the agent's JetStream consumer, not the agent's word.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from libs.contracts.messages import DeployCommand, RemoveCommand
from libs.devstack.sandbox import SandboxWrite
from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import Harness
from tests.support import eventually


def deployment_writes(h: Harness) -> list[SandboxWrite]:
    """Accepted writes of Deployment objects (not their status), in the order the API server took them."""
    return [
        w
        for w in h.cluster.writes
        if w.resource == "deployments" and w.subresource is None and 200 <= w.status < 300
    ]


def per_component(h: Harness) -> dict[str, list[str]]:
    """For each component, what happened to its Deployment in order: a deployment id, or "deleted"."""
    order: dict[str, list[str]] = {}
    for w in deployment_writes(h):
        if w.name is not None:
            order.setdefault(w.name, []).append("deleted" if w.method == "DELETE" else str(w.deployment_id))
    return order


async def consumer(h: Harness) -> Any:
    return await h.bus.js.consumer_info(h.subjects.dataplane_stream.name, h.subjects.agent_durable(h.dp))


async def send_all(h: Harness, commands: list[DeployCommand | RemoveCommand]) -> None:
    for cmd in commands:
        if isinstance(cmd, RemoveCommand):
            await h.send_removal(cmd)
        else:
            await h.send(cmd)


async def test_with_the_kubernetes_api_away_commands_wait_in_order_and_apply_when_it_returns(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        before = await h.deployed("gone", seq=1)
        written_before = len(h.cluster.writes)

        await h.cluster.stop()  # the API server is unreachable: connections are refused
        commands: list[DeployCommand | RemoveCommand] = [
            h.command("api", seq=2, image="registry.example.com/acme/api:2"),
            h.removal("gone", seq=3),
            h.command("api", seq=4, image="registry.example.com/acme/api:4"),
            h.command("web", seq=5),
        ]
        await send_all(h, commands)

        async def held() -> Any:
            info = await consumer(h)
            # Every command is in the agent's hands and none is acked: each component's first one is
            # held (kept alive) and the later ones of that component wait behind it in the agent.
            return info if info.num_ack_pending == len(commands) and info.num_pending == 0 else None

        info = await eventually(held, what="every command held, none acked")
        assert info.num_redelivered == 0  # held in place (kept alive), not redelivered
        deploys = [c for c in commands if isinstance(c, DeployCommand)]
        assert all(h.reports_for(c.deployment_id) == [] for c in deploys)  # nothing failed meanwhile

        await h.cluster.start()  # the same address, the same objects
        for cmd in deploys:
            assert (await h.wait_report(cmd.deployment_id, timeout=30)).status == "succeeded"
        await eventually(lambda: _none_left(h), what="the consumer to have every command acked")

        assert per_component(h) == {
            "gone": [before.deployment_id, "deleted"],
            "api": [deploys[0].deployment_id, deploys[1].deployment_id],
            "web": [deploys[2].deployment_id],
        }
        assert h.cluster.writes[written_before:], "the commands were applied after the outage"
        assert h.obj("apps/v1", "deployments", "gone") is None
        assert h.image_of("api").endswith("api:4")


async def _none_left(h: Harness) -> bool:
    info = await consumer(h)
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


async def test_a_stopped_agent_catches_up_in_order_and_applies_nothing_twice(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        first = {name: h.command(name, seq=i + 1) for i, name in enumerate(("api", "web", "worker"))}
        for cmd in first.values():
            await h.send(cmd)
        for cmd in first.values():
            assert (await h.wait_report(cmd.deployment_id)).status == "succeeded"
        await eventually(lambda: _none_left(h), what="every command acked before the agent stops")

        await h.stop_agent()
        # Interleaved over three components while nobody listens: two more api deploys, web
        # removed and deployed again, worker once more.
        later: list[DeployCommand | RemoveCommand] = [
            h.command("api", seq=10, image="registry.example.com/acme/api:10"),
            h.command("web", seq=11, image="registry.example.com/acme/web:11"),
            h.removal("web", seq=12),
            h.command("worker", seq=13, image="registry.example.com/acme/worker:13"),
            h.command("api", seq=14, image="registry.example.com/acme/api:14"),
            h.command("web", seq=15, image="registry.example.com/acme/web:15"),
        ]
        await send_all(h, later)
        assert (await consumer(h)).num_pending == len(later)

        await h.start_agent()
        deploys = [c for c in later if isinstance(c, DeployCommand)]
        # web 11: the removal right behind it ends its watch, without a report if it had not
        # finished yet (usecases/watch.py: the orchestrator forgot a removed component's deployments).
        removed_behind = {c.deployment_id for c in later[1:2] if isinstance(c, DeployCommand)}
        for cmd in deploys:
            if cmd.deployment_id in removed_behind:
                continue
            assert (await h.wait_report(cmd.deployment_id, timeout=30)).status in {"succeeded", "superseded"}
        newest = {c.component: c for c in deploys}  # the last one sent per component
        for cmd in newest.values():
            assert (await h.wait_report(cmd.deployment_id, timeout=30)).status == "succeeded"
        await eventually(lambda: _none_left(h), what="the backlog acked")

        order = per_component(h)
        api10, web11, worker13, api14, web15 = (c.deployment_id for c in deploys)
        # Each component's writes in the order the commands were sent; a deploy superseded before
        # it was applied may be missing, but never out of order.
        assert order["worker"] == [first["worker"].deployment_id, worker13]
        assert order["web"] in (
            [first["web"].deployment_id, web11, "deleted", web15],
            [first["web"].deployment_id, "deleted", web15],
        )
        assert order["api"] in (
            [first["api"].deployment_id, api10, api14],
            [first["api"].deployment_id, api14],
        )
        twice = {d: n for d, n in Counter(w.deployment_id for w in deployment_writes(h)).items() if n > 1}
        assert twice == {}
        for name, cmd in newest.items():
            assert h.image_of(name) == cmd.image
