"""Deploy latency on the HA stack: three nats-servers as one JetStream cluster (R3 streams), two
replicas of each service, beside the run's own single-node stack measured the same way.

What is compared, and why this way: the same deploys (webhook POST → `succeeded` through the
long-poll, `latency.Driver`), at the same unloaded rate, over the same number of components, both
through the stack's front door (which spreads the HA stack's requests over its replicas as a
Kubernetes Service would; it costs the single-node figure one local proxy hop too, so the two
differ only in NATS and the replicas). The single-node side is the run's main stack; the HA
stack is started for this part alone and stopped after it, so during each measurement the
other stack sits idle. R3 means every JetStream publish waits for a second server to store it,
on each of the four hops that go through a stream: that is the price this figure shows.

Right after `latency` in `bench.run.PARTS`: `scale` and `intake` leave backlogs (a thousand data
planes' deploys, every accepted webhook) that the single-node side would queue behind.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bench import latency, provision
from bench.client import Admin
from bench.stack import REPOSITORY, Run, start_stack
from libs.devstack.servers.nats_cluster import NatsCluster
from libs.devstack.stack import Stack

NATS_NODES = 3
REPLICAS = 2


@dataclass(frozen=True)
class Size:
    components: int
    deploys: int
    rate: float


# Two deploys per component, ten seconds apart: none supersedes another, so each side's figure is
# 200 rollouts, not the few that outlive a queue.
FULL = Size(components=100, deploys=200, rate=10.0)
QUICK = Size(components=4, deploys=4, rate=10.0)


def pids(stack: Stack) -> dict[str, int]:
    """Every process of `stack` whose CPU counts: each replica, the agent and each nats-server."""
    out = {name: p.popen.pid for name, p in stack.procs.items() if p.popen is not None and name != "front"}
    nodes = stack.nats.nodes if isinstance(stack.nats, NatsCluster) else [stack.nats]
    for index, node in enumerate(nodes):
        if node.pid:
            out[f"nats-{index + 1}"] = node.pid
    return out


async def measure(
    run: Run, stack: Stack, size: Size, *, targets: list[provision.Target] | None = None
) -> Any:
    """Warm up, then `size.deploys` at `size.rate` through `stack`'s front door."""
    async with run.session() as session:
        if targets is None:
            admin = Admin.for_stack(session, stack)
            targets = await provision.latency_components(
                admin,
                count=size.components,
                registry_host=stack.registry.host,
                repository=REPOSITORY,
                dataplane_id=stack.state["provisioned"]["dataplane_id"],
                prefix="ha",
            )
        driver = latency.Driver(
            session,
            gateway_url=stack.front_url,
            orchestrator_url=stack.front_url,
            admin_token=stack.org_key or stack.admin_token,
        )
        return await latency.measure(
            run, driver, targets, deploys=size.deploys, rate=size.rate, pids=pids(stack)
        )


def part(run: Run) -> None:
    """`ha`: `single` (this run's stack) and `ha` (3 NATS nodes, 2 replicas), the same deploys each."""
    size = QUICK if run.plan.quick else FULL
    run.clock.say(f"ha: single node, {size.deploys} deploys at {size.rate:g}/s through the front door")
    single = asyncio.run(measure(run, run.stack, size, targets=run.targets[: size.components]))
    run.clock.say(f"ha: starting {NATS_NODES} nats-servers and {REPLICAS} replicas of each service")
    stack = start_stack(
        run.root / "ha-stack", run.clock, tags=latency.TAGS, replicas=REPLICAS, nats_nodes=NATS_NODES
    )
    try:
        clustered = asyncio.run(measure(run, stack, size))
    finally:
        stack.stop()
    run.result["ha"] = {
        "nats_nodes": NATS_NODES,
        "replicas": REPLICAS,
        "via": "front door",
        "single": single,
        "ha": clustered,
    }


def render(result: dict[str, Any]) -> str:
    """The two figures side by side, for the end of `make bench`'s table."""
    ha = result.get("ha")
    if not ha:
        return ""
    lines = [
        f"HA stack ({ha['nats_nodes']} nats-servers as one JetStream cluster, R3 streams, "
        f"{ha['replicas']} replicas of each service) beside this run's single node, through the front door:"
    ]
    for label, key in (("single node", "single"), ("HA", "ha")):
        section = ha[key]
        e2e = section["e2e_ms"]
        lines.append(
            f"  {label:<12} webhook -> succeeded p50 {e2e.get('p50')} ms   p99 {e2e.get('p99')} ms   "
            f"({section['succeeded']}/{section['deploys']} deploys at {section['rate_per_s']:g}/s, "
            f"{section['components']} components)"
        )
    return "\n".join(lines)
