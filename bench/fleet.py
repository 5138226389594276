"""Many data planes in one process: `python -m bench.fleet --tokens FILE --ready FILE`.

For the scale benchmark. Reads one enrollment token per line from `--tokens`
(a 0600 file the driver wrote), enrolls every data plane with the orchestrator
exactly as a lone agent does at its first start, then runs all the agents with
`run_agents` (each with its own durable consumer, heartbeat and watches; one
NATS connection and one Kubernetes client shared, see below). Settings come
from the usual `LANDFALL_*` environment, as for `python -m services.data_plane_agent`.

`run_agents` is the fleet runner, N data planes in one event loop: each
`Agent` has its own durable consumer, heartbeat, report queue and watches,
exactly as if it ran alone; by default they share one NATS connection and one
Kubernetes client (pass `shared=False` for a connection each, closer to N real
agents). Agents that enrolled with their own NATS user (`identity.nats`) always
get a connection each, as that user: NATS permissions are per connection. The
objects each agent writes carry its data plane id, so agents that share one
cluster resume only their own rollouts. It is a second composition root beside
the agent's `app.py` (bench-only, so it lives here, not in the service).

When every agent's durable consumer exists on JetStream, it writes `--ready`
(JSON: how many agents, how long enrolling and starting took) so that the
driver never measures an agent that is still starting. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import nats.errors
import nats.js.errors
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from libs.contracts.subjects import Subjects
from libs.runtime import bus as busmod
from libs.runtime.logs import setup_logging
from libs.runtime.natsauth import NatsUser
from services.data_plane_agent.agent import Agent, AgentMetrics, AgentOptions
from services.data_plane_agent.clients.kube import Kube
from services.data_plane_agent.clients.orchestrator import enroll
from services.data_plane_agent.domain.identity import Identity
from services.data_plane_agent.settings import Settings

log = logging.getLogger("bench.fleet")


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
            kube = await Kube.from_settings(settings)
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
                    options=AgentOptions.from_settings(settings, create_consumer=identity.nats is None),
                    metrics=metrics,
                )
            )
        try:
            await asyncio.gather(*(agent.start() for agent in agents))
            yield agents
        finally:
            await asyncio.gather(*(agent.stop(grace_seconds=2.0) for agent in agents))


async def enroll_all(settings: Settings, tokens: list[str], *, concurrency: int = 16) -> list[Identity]:
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(token: str) -> Identity:
            async with gate:
                own = settings.model_copy(update={"enrollment_token": SecretStr(token)})
                return await enroll(own, session=session)

        return await asyncio.gather(*(one(t) for t in tokens))


async def consuming(agent: Agent, deadline: float) -> None:
    """Wait until the durable consumer exists (made by the agent, or with NATS auth by the orchestrator)."""
    subjects = agent.bus.subjects
    durable = subjects.agent_durable(agent.dataplane_id)
    while asyncio.get_running_loop().time() < deadline:
        try:
            await agent.bus.js.consumer_info(subjects.dataplane_stream.name, durable)
            return
        except nats.js.errors.NotFoundError:
            await asyncio.sleep(0.05)
        except (nats.errors.Error, TimeoutError) as exc:  # e.g. not allowed: the warm-up deploys cover it
            log.warning("cannot check the consumer", extra={"durable": durable, "error": repr(exc)})
            return


async def serve(settings: Settings, tokens: list[str], ready: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    identities = await enroll_all(settings, tokens)
    enrolled = time.monotonic()
    async with run_agents(settings, identities) as agents:
        deadline = loop.time() + 120
        for agent in agents:
            await consuming(agent, deadline)
        body = {
            "agents": len(agents),
            "enroll_seconds": round(enrolled - started, 2),
            "start_seconds": round(time.monotonic() - enrolled, 2),
        }
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(ready)
        log.info("fleet ready", extra=body)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--tokens", type=Path, required=True, help="one enrollment token per line")
    parser.add_argument("--ready", type=Path, required=True, help="written once every agent consumes")
    args = parser.parse_args(argv)
    settings = Settings()
    setup_logging(service="bench-fleet", level=settings.log_level, fmt=settings.log_format)
    tokens = [line.strip() for line in args.tokens.read_text().splitlines() if line.strip()]
    asyncio.run(serve(settings, tokens, args.ready))


if __name__ == "__main__":
    main()
