"""Many data planes in one process: `python -m bench.fleet --tokens FILE --ready FILE`.

For the scale benchmark. Reads one enrollment token per line from `--tokens`
(a 0600 file the driver wrote), enrolls every data plane with the orchestrator
exactly as a lone agent does at its first start, then runs all the agents with
`services.data_plane_agent.fleet.run_agents` (each with its own durable
consumer, heartbeat and watches; one NATS connection and one Kubernetes client
shared, as that module's docstring explains). Settings come from the usual
`LANDFALL_*` environment, as for `python -m services.data_plane_agent`.

When every agent's durable consumer exists on JetStream, it writes `--ready`
(JSON: how many agents, how long enrolling and starting took) so that the
driver never measures an agent that is still starting. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from pathlib import Path

import aiohttp
import nats.errors
import nats.js.errors
from pydantic import SecretStr

from libs.runtime.logs import setup_logging
from services.data_plane_agent.agent import Agent
from services.data_plane_agent.fleet import run_agents
from services.data_plane_agent.identity import Identity, enroll
from services.data_plane_agent.settings import Settings

log = logging.getLogger("bench.fleet")


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
