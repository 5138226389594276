"""The scale part: the latency run again with 10, 100 and 1,000 data planes.

For each count: a fresh sandbox Kubernetes API (the stack's own stays with its
one data plane), that many orgs with a data plane each (a webhook deploys to
the first environment of its component's org, so N planes that CI reaches take
N orgs), one `bench.fleet` process running all their agents, the warm-up and
the same open-loop run as `bench.latency`, then fleet and sandbox stop. A level
that fails is reported in its place and the next one is still measured.

The fleet's CPU and the extra sandbox's are counted beside the stack's, so the
cost per deploy covers the agents wherever they run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from bench import footprint, latency, provision
from bench.client import Admin, ApiError
from bench.procs import Child, wait_http, write_secret_lines
from bench.stack import REPOSITORY, BenchError, Run
from libs.devstack.stack import free_ports


async def level(run: Run, platform: Admin, driver: latency.Driver, *, planes: int) -> dict[str, Any]:
    stack, root, say = run.stack, run.root, run.clock.say
    logs = root / "logs"
    kubeconfig = root / f"sandbox-{planes}.kubeconfig"
    (port,) = free_ports(1)
    sandbox = Child(
        f"sandbox-{planes}",
        [
            sys.executable,
            "-m",
            "libs.devstack.sandbox",
            "--port",
            str(port),
            "--kubeconfig",
            str(kubeconfig),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        logs=logs,
    )
    fleet: Child | None = None
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/version", "sandbox", child=sandbox)
        components = max(planes, run.plan.scale_min_components)
        say(f"scale {planes}: creating {planes} orgs with a data plane each and {components} components")
        made, targets = await provision.scale_planes(
            platform,
            planes=planes,
            components=components,
            registry_host=stack.registry.host,
            repository=REPOSITORY,
            prefix=f"scale{planes}",
        )
        tokens = write_secret_lines(root / f"enroll-{planes}.txt", [p.enrollment_token for p in made])
        ready = root / f"fleet-{planes}.ready"
        env = stack.env("data_plane_agent")
        env.update(
            {
                "LANDFALL_SERVICE_NAME": "bench-fleet",
                "LANDFALL_KUBECONFIG": str(kubeconfig),
                "LANDFALL_HTTP_PORT": "0",
            }
        )
        say(f"scale {planes}: starting {planes} agents in one process")
        fleet = Child(
            f"fleet-{planes}",
            [sys.executable, "-m", "bench.fleet", "--tokens", str(tokens), "--ready", str(ready)],
            env=env,
            logs=logs,
        )
        deadline = time.monotonic() + 600
        while not ready.exists():
            if not fleet.alive():
                raise BenchError(f"the fleet exited with {fleet.popen.returncode}:\n{fleet.tail()}")
            if time.monotonic() > deadline:
                raise BenchError("the fleet did not get ready within 10 minutes")
            await asyncio.sleep(0.2)
        started = json.loads(ready.read_text())
        say(f"scale {planes}: fleet ready ({started})")
        cpu_before = footprint.cpu_seconds(fleet.pid)
        result = await latency.measure(
            run,
            driver,
            targets,
            deploys=run.plan.scale_deploys,
            rate=run.plan.latency_rate,
            pids={**run.pids, "fleet": fleet.pid, "fleet sandbox": sandbox.pid},
        )
        result["fleet"] = {
            **started,
            "rss_mb": footprint.rss_mb(fleet.pid),
            "cpu_seconds_during_run": round(footprint.cpu_seconds(fleet.pid) - cpu_before, 2),
        }
        result["dataplanes_total"] = planes
        return result
    finally:
        if fleet is not None:
            await asyncio.to_thread(fleet.stop)
        await asyncio.to_thread(sandbox.stop)


async def _part(run: Run) -> None:
    async with run.session() as session:
        platform = Admin.for_stack(session, run.stack, platform=True)  # it creates the orgs
        driver = latency.Driver.for_run(session, run)
        levels = []
        for planes in run.plan.scale_planes:
            try:
                measured = await level(run, platform, driver, planes=planes)
            except (BenchError, ApiError) as exc:  # report it, measure the rest
                run.clock.say(f"scale {planes}: failed: {exc}")
                measured = {"dataplanes_total": planes, "error": str(exc)[-2000:]}
            levels.append(measured)
        run.result["scale"] = {"levels": levels}


def part(run: Run) -> None:
    """`scale`: one level per count in `plan.scale_planes`."""
    asyncio.run(_part(run))
