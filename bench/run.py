"""`python -m bench.run [--quick] [--output DIR]`: start the stack, measure, print, write JSON.

Phases, in this order (each says why it is where it is):

1. start the stack as the e2e tests do (random ports, a temporary directory,
   the sandbox data plane) and record the services' idle memory;
2. latency on the stack's one data plane: components in org `default`, a
   warm-up deploy each (CI tokens, caches and namespaces are then what they are
   in steady state), then an open-loop run at a fixed rate;
3. scale: for each data-plane count, a fresh sandbox Kubernetes API, that many
   orgs/data planes/environments, one `bench.fleet` process running all their
   agents, warm-up, the same open-loop run, then fleet and sandbox stop;
4. intake last, because every accepted webhook is a real deployment the
   orchestrator then works through: the floor first, then the gateway (the
   orchestrator consuming that backlog while the gateway is measured is part of
   what the gateway competes with on a real 2-core machine; the CPU each process
   used during each window is recorded, so that share is visible);
5. memory after the run, and the peak seen by a 1-second sampler.

The gateway's per-token rate limit (a policy against runaway CI loops, default
20/s) is raised for the benchmark stack; nothing else is tuned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench import footprint, intake, latency, provision, report
from libs.devstack.stack import Stack, free_ports, http, random_ports

RESULTS = Path(__file__).resolve().parent / "results"
REPOSITORY = "bench/app"
SERVICES = ("webhook_gateway", "orchestrator", "credentials", "data_plane_agent")
BENCH_ENV = {
    # The per-token limit protects the orchestrator from a runaway CI loop; intake must not hit it.
    "LANDFALL_RATE_LIMIT_PER_SECOND": "1000000",
    "LANDFALL_RATE_LIMIT_BURST": "1000000",
}


@dataclass(frozen=True)
class Plan:
    quick: bool
    intake_seconds: float
    intake_connections: int
    wrk_threads: int
    latency_deploys: int
    latency_rate: float
    latency_components: int
    unloaded_deploys: int
    unloaded_rate: float
    scale_planes: tuple[int, ...]
    scale_deploys: int
    scale_min_components: int


FULL = Plan(
    quick=False,
    intake_seconds=10,
    intake_connections=32,
    wrk_threads=2,
    latency_deploys=1000,
    latency_rate=50,
    latency_components=100,
    unloaded_deploys=200,
    unloaded_rate=10,
    scale_planes=(10, 100, 1000),
    scale_deploys=1000,
    scale_min_components=100,
)
QUICK = Plan(
    quick=True,
    intake_seconds=1,
    intake_connections=4,
    wrk_threads=1,
    latency_deploys=20,
    latency_rate=20,
    latency_components=4,
    unloaded_deploys=5,
    unloaded_rate=10,
    scale_planes=(2, 4),
    scale_deploys=12,
    scale_min_components=4,
)


class BenchError(RuntimeError):
    pass


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, line: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {line}", file=sys.stderr, flush=True)


class Child:
    """A helper process of the benchmark (floor, fleet, extra sandbox) with its log in a file."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(url: str, what: str, *, timeout: float = 90, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise BenchError(f"{what} exited with {child.popen.returncode}:\n{child.tail()}")
        with contextlib.suppress(OSError):
            if http("GET", url, timeout=2)[0] == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not answer at {url} within {timeout:.0f} s")


def write_secret_lines(path: Path, lines: list[str]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{line}\n" for line in lines))
    return path


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": intake.wrk_version(),
    }


# --- the stack ------------------------------------------------------------------------------------


def start_stack(root: Path, clock: Clock) -> Stack:
    stack = Stack(root, ports=random_ports(), persistent_vault=False, extra_env=dict(BENCH_ENV))
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
    for tag in latency.TAGS:
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


# --- latency and scale ------------------------------------------------------------------------------


async def measure(
    driver: latency.Driver,
    targets: list[provision.Target],
    *,
    deploys: int,
    rate: float,
    clock: Clock,
    pids: dict[str, int],
    warm_up: bool = True,
) -> dict[str, Any]:
    """Warm up, then the open-loop run; with the CPU each process spent per deploy during the run."""
    warm: list[latency.Deploy] = []
    if warm_up:
        warm = await driver.closed_loop(
            latency.plan(targets, count=len(targets), first_round=0), concurrency=16
        )
        failed = [j for j in warm if not j.ok]
        if failed:
            raise BenchError(
                f"{len(failed)} warm-up deploys failed, e.g. {failed[0].error or failed[0].status}"
            )
    clock.say(f"warm: {len(warm)} deploys; now {deploys} deploys at {rate:g}/s")
    jobs = latency.plan(targets, count=deploys)
    pids = {**pids, "bench driver": os.getpid()}
    cpu_before = footprint.cpu(pids)
    started = time.monotonic()
    await driver.open_loop(jobs, rate=rate)
    elapsed = time.monotonic() - started
    cpu_after = footprint.cpu(pids)
    await driver.fetch_timings(jobs)
    result = latency.analyse(jobs, rate=rate, elapsed_s=elapsed)
    result["warmup_deploys"] = len(warm)
    spent = {name: cpu_after[name] - cpu_before[name] for name in pids}
    result["cpu_ms_per_deploy"] = {name: round(1000 * v / deploys, 2) for name, v in spent.items()}
    result["cpu_ms_per_deploy"]["total"] = round(1000 * sum(spent.values()) / deploys, 2)
    result["cpu_busy"] = round(sum(spent.values()) / elapsed / (os.cpu_count() or 1), 3)
    e2e = result["e2e_ms"]
    clock.say(
        f"{result['succeeded']}/{deploys} succeeded; p50 {e2e.get('p50')} p95 {e2e.get('p95')} "
        f"p99 {e2e.get('p99')} ms; slowest hop: {result['slowest_hop']}"
    )
    return result


async def scale_level(
    stack: Stack,
    admin: provision.Admin,
    driver: latency.Driver,
    *,
    planes: int,
    plan: Plan,
    root: Path,
    clock: Clock,
    pids: dict[str, int],
) -> dict[str, Any]:
    logs = root / "logs"
    kubeconfig = root / f"sandbox-{planes}.kubeconfig"
    (port,) = free_ports(1)
    sandbox = Child(
        f"sandbox-{planes}",
        [
            sys.executable,
            "-m",
            "libs.devstack.sandbox_cluster",
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
        components = max(planes, plan.scale_min_components)
        clock.say(
            f"scale {planes}: creating {planes} orgs with a data plane each and {components} components"
        )
        made, targets = await provision.scale_planes(
            admin,
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
        clock.say(f"scale {planes}: starting {planes} agents in one process")
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
        clock.say(f"scale {planes}: fleet ready ({started})")
        cpu_before = footprint.cpu_seconds(fleet.pid)
        result = await measure(
            driver,
            targets,
            deploys=plan.scale_deploys,
            rate=plan.latency_rate,
            clock=clock,
            pids={**pids, "fleet": fleet.pid, "fleet sandbox": sandbox.pid},
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


async def drive(
    stack: Stack, plan: Plan, root: Path, clock: Clock, out: dict[str, Any], pids: dict[str, int]
) -> list[provision.Target]:
    """Latency, then scale; returns the latency components (intake deploys them too)."""
    urls = {s: stack.url(s) for s in ("credentials", "orchestrator", "webhook_gateway")}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=90)) as session:
        admin = provision.Admin(session, urls=urls, admin_token=stack.admin_token)
        driver = latency.Driver(
            session,
            gateway_url=urls["webhook_gateway"],
            orchestrator_url=urls["orchestrator"],
            admin_token=stack.admin_token,
        )
        clock.say(f"latency: creating {plan.latency_components} components")
        targets = await provision.latency_components(
            admin,
            count=plan.latency_components,
            registry_host=stack.registry.host,
            repository=REPOSITORY,
            dataplane_id=stack.state["provisioned"]["dataplane_id"],
        )
        out["latency"] = await measure(
            driver, targets, deploys=plan.latency_deploys, rate=plan.latency_rate, clock=clock, pids=pids
        )
        # The same path at a rate far below capacity: what each hop costs without queueing.
        out["latency_unloaded"] = await measure(
            driver,
            targets,
            deploys=plan.unloaded_deploys,
            rate=plan.unloaded_rate,
            clock=clock,
            pids=pids,
            warm_up=False,
        )
        levels = []
        for planes in plan.scale_planes:
            try:
                level = await scale_level(
                    stack, admin, driver, planes=planes, plan=plan, root=root, clock=clock, pids=pids
                )
            except (BenchError, provision.ProvisionError) as exc:  # report it, measure the rest
                clock.say(f"scale {planes}: failed: {exc}")
                level = {"dataplanes_total": planes, "error": str(exc)[-2000:]}
            levels.append(level)
        out["scale"] = {"levels": levels}
        return targets


# --- intake ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP a process for the block: its JetStream consumer then takes nothing, as if it were down."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def refresh(stack: Stack, targets: list[provision.Target]) -> None:
    """One deploy per component, waited for: the gateway's token and component caches are fresh."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=90)) as session:
        driver = latency.Driver(
            session,
            gateway_url=stack.url("webhook_gateway"),
            orchestrator_url=stack.url("orchestrator"),
            admin_token=stack.admin_token,
        )
        done = await driver.closed_loop(
            latency.plan(targets, count=len(targets), first_round=0), concurrency=16
        )
    failed = [j for j in done if not j.ok]
    if failed:
        raise BenchError(
            f"{len(failed)} deploys failed before intake, e.g. {failed[0].error or failed[0].status}"
        )


def measure_intake(
    stack: Stack, plan: Plan, targets: list[provision.Target], root: Path, clock: Clock, pids: dict[str, int]
) -> dict[str, Any]:
    """The floor, then the gateway twice: alone (the orchestrator paused, so nothing downstream runs,
    as for the floor) and with the pipeline consuming what it accepts (the two share 2 cores)."""
    tokens_file = write_secret_lines(root / "ci-tokens.txt", [t.token for t in targets])
    (port,) = free_ports(1)
    creds = stack.env("webhook_gateway").get("LANDFALL_NATS_CREDS_FILE")
    floor = Child(
        "floor",
        [
            sys.executable,
            "-m",
            "bench.floor",
            "--port",
            str(port),
            "--nats-url",
            stack.nats.url,
            "--prefix",
            stack.bus_prefix,
            # the gateway's NATS user when nats-server runs with auth: the same rights as the gateway
            *(["--nats-creds", creds] if creds else []),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        logs=root / "logs",
    )
    common: dict[str, Any] = {
        "tokens_file": tokens_file,
        "body": {"tag": latency.TAGS[0]},
        "script_dir": root,
        "connections": plan.intake_connections,
        "threads": plan.wrk_threads,
        "duration_s": plan.intake_seconds,
    }
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", "the floor server", child=floor)
        clock.say(f"intake: floor, {plan.intake_connections} connections for {plan.intake_seconds:g} s")
        floor_pids = {**pids, "floor": floor.pid}
        base = intake.run_wrk(
            f"http://127.0.0.1:{port}/v1/webhooks/deploy",
            cpu_probe=lambda: footprint.cpu(floor_pids),
            **common,
        )
    finally:
        floor.stop()
    clock.say(f"intake: floor accepted {base.accepted_per_s:,.0f}/s; now the gateway alone")
    asyncio.run(refresh(stack, targets))
    url = f"{stack.url('webhook_gateway')}/v1/webhooks/deploy"
    with paused(pids["orchestrator"]):
        alone = intake.run_wrk(url, cpu_probe=lambda: footprint.cpu(pids), **common)
    ratio = alone.accepted_per_s / base.accepted_per_s if base.accepted_per_s else 0.0
    clock.say(
        f"intake: gateway alone accepted {alone.accepted_per_s:,.0f}/s ({ratio:.2f}); now with the pipeline"
    )
    busy = intake.run_wrk(url, cpu_probe=lambda: footprint.cpu(pids), **common)
    busy_ratio = busy.accepted_per_s / base.accepted_per_s if base.accepted_per_s else 0.0
    clock.say(f"intake: gateway with the pipeline accepted {busy.accepted_per_s:,.0f}/s ({busy_ratio:.2f})")
    return {
        "connections": plan.intake_connections,
        "wrk_threads": plan.wrk_threads,
        "duration_s": plan.intake_seconds,
        "components": len(targets),
        "floor": base.as_dict(),
        "gateway": alone.as_dict(),
        "gateway_with_pipeline": busy.as_dict(),
        "ratio": round(ratio, 3),
        "ratio_with_pipeline": round(busy_ratio, 3),
    }


# --- main ---------------------------------------------------------------------------------------------


def write_results(result: dict[str, Any], output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(result["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    path = output / f"{stamp}.json"
    text = json.dumps(result, indent=2) + "\n"
    for target in (path, output / "latest.json"):
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(target)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts, a few seconds per part (the smoke test)"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="where <timestamp>.json and latest.json go"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) afterwards")
    parser.add_argument(
        "--planes",
        help="data-plane counts for the scale part, e.g. 10,100 (default: 10,100,1000; quick: 2,4)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.planes:
        plan = replace(plan, scale_planes=tuple(int(n) for n in args.planes.split(",") if n.strip()))
    clock = Clock()
    result: dict[str, Any] = {
        "schema": 1,
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": asdict(plan),
        "machine": machine(),
    }
    root = Path(tempfile.mkdtemp(prefix="landfall-bench-"))
    stack: Stack | None = None
    ok = False
    try:
        stack = start_stack(root / "stack", clock)
        pids = service_pids(stack)
        everything = {**pids, **server_pids(stack)}
        idle = footprint.memory(pids)
        with footprint.Sampler(pids) as sampler:
            targets = asyncio.run(drive(stack, plan, root, clock, result, everything))
            result["intake"] = measure_intake(stack, plan, targets, root, clock, everything)
        after = footprint.memory(pids)
        result["footprint"] = {
            "idle_mb": idle,
            "after_mb": after,
            "peak_mb": sampler.peak,
            "idle_total_mb": round(sum(idle.values()), 1),
            "after_total_mb": round(sum(after.values()), 1),
            "peak_total_mb": sampler.peak_total,
            "servers_after_mb": footprint.memory(server_pids(stack)),
        }
        ok = True
    except (BenchError, provision.ProvisionError, intake.WrkMissing) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
    finally:
        if stack is not None:
            clock.say("stopping the stack")
            stack.stop()
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs and state kept in {root}", file=sys.stderr)
    if not ok:
        return 1
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["duration_s"] = round(time.monotonic() - clock.started, 1)
    result["targets"] = report.targets(result)
    path = write_results(result, args.output)
    print(report.render_text(result))
    print(f"\nwritten: {path} (and {args.output / 'latest.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
