"""Many agents in one process, for scale benchmarks: N data planes, one event loop.

Each `Agent` has its own durable consumer, heartbeat, report queue and watches,
exactly as if it ran alone; by default they share one NATS connection and one
Kubernetes client (pass `shared=False` for a connection each, closer to N real
agents). Agents that enrolled with their own NATS user (`identity.nats`) always
get a connection each, as that user: NATS permissions are per connection. The
objects each agent writes carry its data plane id, so agents that share one
cluster resume only their own rollouts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from prometheus_client import CollectorRegistry

from libs.contracts.subjects import Subjects
from libs.runtime import bus as busmod
from libs.runtime.natsauth import NatsUser

from .agent import Agent, AgentMetrics
from .app import options_from
from .identity import Identity
from .kube import Kube
from .settings import Settings


@contextlib.asynccontextmanager
async def run_agents(
    settings: Settings,
    identities: Sequence[Identity],
    *,
    shared: bool = True,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[list[Agent]]:
    """Start one agent per identity; stop them all (and close what was opened) on exit."""
    async with contextlib.AsyncExitStack() as stack:
        metrics = AgentMetrics(registry or CollectorRegistry())
        subjects = Subjects(settings.bus_prefix)

        async def open_bus(user: NatsUser | None = None) -> busmod.Bus:
            nc = await busmod.connect(settings, name=settings.service_name, user=user)
            stack.push_async_callback(nc.close)
            return busmod.Bus(nc, subjects)

        async def open_kube() -> Kube:
            kube = await Kube.connect(
                kubeconfig=settings.kubeconfig,
                context=settings.kube_context,
                timeout=settings.kube_timeout_seconds,
                max_connections=settings.kube_max_connections,
                max_watches=settings.kube_max_watches,
            )
            stack.push_async_callback(kube.close)
            return kube

        shared_bus = await open_bus() if shared and any(i.nats is None for i in identities) else None
        shared_kube = await open_kube() if shared else None
        agents: list[Agent] = []
        ensured = False
        for identity in identities:
            bus = await open_bus(identity.nats) if identity.nats else shared_bus or await open_bus()
            if settings.ensure_streams and identity.nats is None and not ensured:
                await busmod.ensure_streams(bus.js, subjects.streams)
                ensured = True
            agents.append(
                Agent(
                    identity=identity,
                    bus=bus,
                    kube=shared_kube or await open_kube(),
                    options=options_from(settings, create_consumer=identity.nats is None),
                    metrics=metrics,
                )
            )
        try:
            await asyncio.gather(*(agent.start() for agent in agents))
            yield agents
        finally:
            await asyncio.gather(*(agent.stop(grace_seconds=2.0) for agent in agents))
