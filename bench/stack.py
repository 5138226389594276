"""The stack a benchmark run measures, and `Run`: what its parts share.

The stack is the e2e tests' (`libs.devstack.stack.Stack`: random ports, a
temporary directory, the sandbox data plane) with one difference: the
gateway's per-token rate limit (a policy against runaway CI loops, default
20/s) is raised, since intake must not measure the limiter. Nothing else is
tuned.

A part (latency, scale, intake, …) is a function of a `Run` that writes its
section into `Run.result`. Parts run one after the other on the same stack, so
what one leaves behind is the next one's starting point: `Run.targets`, the
latency components, are what intake deploys too, and `Run.pids` names every
process whose CPU a part may count.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.plan import Plan
from bench.provision import Target
from libs.devstack.stack import Stack, random_ports

REPOSITORY = "bench/app"
SERVICES = ("webhook_gateway", "orchestrator", "credentials", "data_plane_agent")
BENCH_ENV = {
    # The per-token limit protects the orchestrator from a runaway CI loop; intake must not hit it.
    "LANDFALL_RATE_LIMIT_PER_SECOND": "1000000",
    "LANDFALL_RATE_LIMIT_BURST": "1000000",
}


class BenchError(RuntimeError):
    pass


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, line: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {line}", file=sys.stderr, flush=True)


@dataclass
class Run:
    stack: Stack
    plan: Plan
    root: Path
    clock: Clock
    pids: dict[str, int]  # services and servers: every process whose CPU is counted
    result: dict[str, Any]
    targets: list[Target] = field(default_factory=list)  # latency's components; intake deploys them too

    def session(self) -> aiohttp.ClientSession:
        """The HTTP client of a part: no connection limit (open loop), a generous total timeout."""
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=90)
        )


Part = Callable[[Run], None]


def start_stack(
    root: Path, clock: Clock, *, tags: Iterable[str], replicas: int = 1, nats_nodes: int = 1
) -> Stack:
    """The whole stack with a connected agent, and `tags` of `REPOSITORY` pushed to its registry;
    `replicas` processes of each HTTP service and `nats_nodes` clustered nats-servers (bench/ha.py)."""
    stack = Stack(
        root,
        ports=random_ports(),
        persistent_vault=False,
        extra_env=dict(BENCH_ENV),
        replicas=replicas,
        nats_nodes=nats_nodes,
    )
    clock.say(f"starting the stack in {root}")
    stack.start_infra()
    stack.start_sandbox()
    stack.start_services()
    stack.provision()
    stack.start_service("data_plane_agent")
    deadline = time.monotonic() + 60
    while True:
        planes = stack.api("orchestrator", "GET", "/v1/orgs/default/dataplanes")["items"]
        if planes and planes[0]["agent"]["connected"]:
            break
        if time.monotonic() > deadline:
            raise BenchError("the stack's agent never connected")
        time.sleep(0.2)
    for tag in tags:
        stack.registry.push_image(REPOSITORY, tag)
    clock.say("stack ready")
    return stack


def service_pids(stack: Stack) -> dict[str, int]:
    pids: dict[str, int] = {}
    for name in SERVICES:
        popen = stack.procs[name].popen
        assert popen is not None
        pids[name] = popen.pid
    return pids


def server_pids(stack: Stack) -> dict[str, int]:
    pids = {
        "nats": stack.nats.pid,
        "postgres": stack.postgres.pid,
        "openbao": stack.vault.pid,
        "registry": stack.registry.pid,
    }
    sandbox = stack.procs["sandbox"].popen
    if sandbox is not None:
        pids["sandbox"] = sandbox.pid
    return {k: v for k, v in pids.items() if v}
