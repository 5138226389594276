"""Part 4, the cluster: the HA stack (three nats-servers, two replicas of each service) loses nothing
while one NATS server at a time and one replica of a service at a time are SIGKILLed and restarted.

It reuses the crash run's parts (`crash.Run`): `provision` makes the components, `load` sends the
webhooks (here through the front door, which spreads them over the gateway replicas as a
Kubernetes Service would), the kill driver keeps the outage timeline, and `reconcile` decides lost
and duplicated.
The kill order alternates a NATS node and a service replica, so at no moment are two parts down.

Which replica did what: each replica's own `/metrics` counters (a counter is per process):
- gateway: `landfall_gateway_webhooks_total{outcome="created"}`, webhooks it accepted;
- orchestrator: `landfall_orchestrator_deployment_status_total{status="dispatched"}`, deployments
  it sent to the agent (its intake consumer shares one durable with the other replica);
- credentials: `landfall_rpc_served_total{result="ok"}`, tag resolutions and pull secrets it
  answered (one queue group).
A SIGKILLed process takes its counters with it, so the driver reads a replica's counters just
before it kills it and banks them; the figure is banked + the last reading at the end (work done
in the milliseconds between that reading and the kill is not counted). The figures show that
every replica worked and roughly how much, not an exact split: the gateways' sum is the webhooks
accepted, but a deployment whose rollout report overtook its dispatch mark, or that was superseded
first, never counts as `dispatched` anywhere, and one deploy costs one or two credentials RPCs.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from chaos import crash, driver, load
from chaos.provision import PROJECT
from chaos.stack import ChaosStack
from chaos.stack import start as start_stack
from libs.devstack.servers.nats_cluster import NatsCluster
from libs.devstack.stack import HTTP_SERVICES, Stack, replica_name

NATS_NODES = 3
REPLICAS = 2
# (service, the sample name, the label that must match): the work each replica did
WORK = {
    "webhook_gateway": ("landfall_gateway_webhooks_total", ("outcome", "created")),
    "orchestrator": ("landfall_orchestrator_deployment_status_total", ("status", "dispatched")),
    "credentials": ("landfall_rpc_served_total", ("result", "ok")),
}


def every_part() -> tuple[str, ...]:
    """Every replica once, each after a NATS node: nats-1, gateway, nats-2, orchestrator, nats-3, …"""
    replicas = [
        replica_name(s, i)
        for i in range(REPLICAS)
        for s in ("webhook_gateway", "orchestrator", "credentials")
    ]
    return tuple(part for i, name in enumerate(replicas) for part in (f"nats-{i % NATS_NODES + 1}", name))


@dataclass(frozen=True, kw_only=True)
class ClusterPlan(crash.Plan):
    kills: tuple[str, ...]  # in this order, one at a time: `nats-<k>` or a replica's process name
    down: float = 3.0
    seed: int = 17


# One agent applies its data plane's commands (8 components at once), each with R3 acks and
# reports; on 2 shared cores the backlog a node's kill leaves can take minutes to settle.
FULL = ClusterPlan(
    components=100, webhooks=3_000, rate=12.0, tags=3, kills=every_part(), settle_timeout=900.0
)
QUICK = ClusterPlan(
    components=10, webhooks=150, rate=4.0, tags=3, kills=("nats-1", "orchestrator"), settle_timeout=150.0
)


def read_work(url: str, service: str) -> float:
    """The work counter of the replica at `url` (0 when it does not answer)."""
    sample, (label, value) = WORK[service]
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:  # noqa: S310 - our own replica
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and s.labels.get(label) == value
    )


@dataclass
class WorkCounts:
    """Per replica: what it did, banked at each kill plus what its current process reports."""

    stack: Stack
    banked: dict[str, float] = field(default_factory=dict)

    def bank(self, name: str) -> None:
        done = read_work(self.stack.url(name), name.partition("-")[0])
        self.banked[name] = self.banked.get(name, 0.0) + done

    def totals(self) -> dict[str, int]:
        out = {}
        for service in HTTP_SERVICES:
            for index in range(len(self.stack.urls(service))):
                name = replica_name(service, index)
                out[name] = int(self.banked.get(name, 0.0) + read_work(self.stack.url(name), service))
        return out


@dataclass
class ClusterDriver(driver.Driver):
    """The crash driver's timeline and retries, with NATS nodes and single replicas as targets."""

    work: WorkCounts | None = None

    def _node(self, target: str) -> Any:
        assert isinstance(self.stack.nats, NatsCluster)
        return self.stack.nats.node(int(target.removeprefix("nats-")) - 1)

    def _kill(self, target: str) -> None:
        if target.startswith("nats-"):
            self._node(target).kill()
            return
        if self.work is not None:
            self.work.bank(target)
        self.stack.kill_service(target)

    def _start(self, target: str) -> None:
        if target.startswith("nats-"):
            self._node(target).start()
            assert isinstance(self.stack.nats, NatsCluster)
            self.stack.nats.wait_healthy()
        else:
            self.stack.restart_service(target)


def schedule(plan: ClusterPlan) -> list[driver.Event]:
    """The kills evenly spread over the middle 80 % of the webhooks, one after the other."""
    step = 0.8 * plan.duration / max(1, len(plan.kills))
    return [
        driver.Event(at=round(0.1 * plan.duration + i * step, 1), targets=(target,), down=plan.down)
        for i, target in enumerate(plan.kills)
    ]


@dataclass(kw_only=True)
class ClusterResult(crash.Outcome):
    plan: ClusterPlan
    work: dict[str, int] = field(default_factory=dict)

    @property
    def figures(self) -> dict[str, Any]:
        return {
            **super().figures,
            "nats_nodes": NATS_NODES,
            "replicas": REPLICAS,
            "work_per_replica": self.work,
        }

    @property
    def samples(self) -> dict[str, Any]:
        return {**super().samples, "idle_replicas": self.idle_replicas}

    @property
    def idle_replicas(self) -> list[str]:
        return [name for name, n in self.work.items() if n == 0]

    @property
    def ok(self) -> bool:
        return super().ok and self.unavailable_outside_outages == 0 and not self.idle_replicas


def start(root: Path, *, private_password: str) -> ChaosStack:
    """The HA stack: `NATS_NODES` clustered nats-servers, `REPLICAS` processes of each HTTP service."""
    return start_stack(root, private_password=private_password, replicas=REPLICAS, nats_nodes=NATS_NODES)


async def run(chaos: ChaosStack, plan: ClusterPlan, *, say: Callable[[str], None] = print) -> ClusterResult:
    stack = chaos.stack
    run = await crash.Run.provisioned(chaos, plan, project=PROJECT, say=say)
    say(f"provisioned {plan.components} components; kills in order: {', '.join(plan.kills)}")

    work = WorkCounts(stack)
    kills = ClusterDriver(stack, schedule(plan), say=say, work=work)
    say(
        f"sending {plan.webhooks} webhooks at {plan.rate:g}/s (~{plan.duration:.0f} s) through the front door"
    )
    tally = await run.beside(kills, load.run(stack.front_url, run.hooks, rate=plan.rate, progress=say))
    return ClusterResult(
        plan=plan,
        tally=tally,
        result=await run.judge(),
        outages=kills.outages,
        driver_failures=kills.failures,
        work=await asyncio.to_thread(work.totals),
        fleet=run.fleet,
        seconds=run.seconds,
    )


def render(c: dict[str, Any]) -> list[str]:
    """The CLUSTER block of `make chaos`'s report, from `ClusterResult.figures`."""
    per = "   ".join(f"{name} {n}" for name, n in c["work_per_replica"].items())
    return [
        "",
        f"CLUSTER  {c['webhooks']} webhooks over {c['components']} components; {c['nats_nodes']} "
        f"nats-servers, {c['replicas']} replicas of each service",
        f"  kills (one at a time): {', '.join(c['kills'])}",
        f"  accepted {c['accepted']}   succeeded {c['succeeded']}   superseded {c['superseded']}   "
        f"lost {c['lost']}   duplicated {c['duplicated']}",
        f"  responses by status: {c['responses']}   connection errors {c['connection_errors']}",
        f"  5xx (other than 503) {c['5xx']}   503 without Retry-After {c['503_without_retry_after']}   "
        f"503 outside an outage {c['503_outside_outages']}",
        f"  work per replica (its /metrics, banked at each kill): {per}",
        f"  seconds {c['seconds']}",
    ]
