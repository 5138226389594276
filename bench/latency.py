"""Deploy latency as CI sees it: webhook POST -> `succeeded` through the long-poll.

Each deploy is `POST /v1/webhooks/deploy` followed at once by
`GET <status_url>?wait=N`, the way the CI snippets do it; its latency is from
just before the POST to the moment the long-poll answers with a terminal
status. Afterwards `GET /v1/deployments/{id}` on the orchestrator gives the
timestamps the services recorded for that deployment (`timings`), which cut
the latency into hops. All clocks are this machine's, so the hops add up.

The schedule is open loop: deploy i starts at `t0 + i / rate` whether or not
earlier ones finished, so a slow system shows up as latency instead of as
fewer deploys (no coordinated omission). Why not a library: wrk2's `-R` is
open loop but times single requests, and a deploy is two dependent requests
(the GET needs the id the POST returned); locust's `constant_throughput`
paces each simulated user closed-loop, and its gevent runtime would compete
for the same 2 cores. A fixed schedule of asyncio tasks is a few lines and
records how late each start was (`start_lag_ms`), so the driver can show it
kept up.

The latency part (`part`) runs on the stack's one data plane: components in
org `default`, a warm-up deploy each (CI tokens, caches and namespaces are
then what they are in steady state), the open-loop run at 50/s, and the same
path at 10/s, far below capacity, for what each hop costs without queueing.
`measure` is shared with the scale part and records the CPU every process
spent per deploy during the run.

`latency_config` (issue 14) makes components of its own (the later parts reuse `run.targets`
and must not inherit config), gives every other one a per-environment config (replicas,
resources, env, a probe and a secret, which the orchestrator writes to Vault and the credentials
service seals for the data plane), and compares webhook -> succeeded of the configured half with
the plain half in the same run: the halves take turns in short rounds (plain first and last), so
that a busy machine's drift falls on both. It runs at the unloaded rate (10/s), not at 50/s: on
two cores 50/s is at or past what the machine can do (about 36 ms of CPU per deploy over every
process: 1.8 cores), where the p50 is the length of the queue and any extra millisecond of CPU
shows as tens of milliseconds of waiting (runs of the same code gave ratios of 1.2 to 4.4). At
10/s the ratio is what config costs a deploy; the CPU each process spent per deploy, per half,
is beside it (`cpu_ms_per_deploy`), so the cost shows even where the latency hides it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from bench import footprint, provision
from bench.client import Admin
from bench.provision import Target
from bench.stack import REPOSITORY, BenchError, Run
from bench.stats import summary

TERMINAL = frozenset({"succeeded", "failed", "superseded"})
TAGS = ("1.0", "1.1")

# Points in time of one deploy, in order; each hop is the time between two neighbours.
POINTS = ("sent", "accepted", "recorded", "dispatched", "applied", "reported", "finished", "seen")
HOPS: dict[str, tuple[str, str, str]] = {
    "gateway": ("sent", "accepted", "POST sent -> gateway accepted (auth, parse, checks)"),
    "intake": ("accepted", "recorded", "accepted -> orchestrator recorded (JetStream, intake consumer, DB)"),
    "dispatch": (
        "recorded",
        "dispatched",
        "recorded -> dispatched (tag -> digest, pull secret via credentials)",
    ),
    "apply": (
        "dispatched",
        "applied",
        "dispatched -> agent applied (JetStream, agent consumer, Kubernetes writes)",
    ),
    "rollout": ("applied", "reported", "applied -> rollout reported (watch until the rollout completes)"),
    "status": ("reported", "finished", "reported -> status recorded (status consumer, DB)"),
    "answer": ("finished", "seen", "status recorded -> CI's long-poll answered (NATS notify, gateway)"),
}


@dataclass
class Deploy:
    target: Target
    tag: str
    deployment_id: str = ""
    status: str = ""
    error: str = ""
    sent: float = 0.0  # wall clock (epoch seconds) just before the POST
    webhook_ms: float = 0.0  # POST -> 202
    e2e_ms: float = 0.0  # POST -> terminal status seen by the long-poll
    start_lag_ms: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # point -> epoch seconds

    @property
    def ok(self) -> bool:
        return self.status == "succeeded" and not self.error

    def hops_ms(self) -> dict[str, float]:
        points = {"sent": self.sent, "seen": self.sent + self.e2e_ms / 1000, **self.timings}
        return {
            name: (points[b] - points[a]) * 1000
            for name, (a, b, _) in HOPS.items()
            if a in points and b in points
        }


@dataclass
class Driver:
    """Deploys through the gateway's webhook, each followed by long-poll; the hops from the orchestrator."""

    session: aiohttp.ClientSession
    _: KW_ONLY
    gateway_url: str
    orchestrator_url: str
    admin_token: str = field(repr=False)
    wait_seconds: int = 30

    @classmethod
    def for_run(cls, session: aiohttp.ClientSession, run: Run) -> Driver:
        stack = run.stack
        return cls(
            session,
            gateway_url=stack.url("webhook_gateway"),
            orchestrator_url=stack.url("orchestrator"),
            admin_token=stack.org_key or stack.admin_token,
        )

    async def deploy(self, job: Deploy) -> Deploy:
        auth = {"Authorization": f"Bearer {job.target.token}"}
        job.sent = time.time()
        started = time.perf_counter()
        try:
            async with self.session.post(
                f"{self.gateway_url}/v1/webhooks/deploy", json={"tag": job.tag}, headers=auth
            ) as resp:
                accepted = await resp.json(content_type=None)
                if resp.status != 202:
                    job.error = f"webhook answered {resp.status}: {str(accepted)[:200]}"
                    return job
            job.webhook_ms = (time.perf_counter() - started) * 1000
            job.deployment_id = str(accepted["deployment_id"])
            url = str(accepted["status_url"])
            if url.startswith("/"):
                url = self.gateway_url + url
            deadline = started + self.wait_seconds
            while True:
                wait = max(1, min(self.wait_seconds, round(deadline - time.perf_counter())))
                async with self.session.get(url, params={"wait": str(wait)}, headers=auth) as resp:
                    view = await resp.json(content_type=None)
                    if resp.status != 200:
                        job.error = f"long-poll answered {resp.status}: {str(view)[:200]}"
                        return job
                job.status = str(view["status"])
                if job.status in TERMINAL or time.perf_counter() >= deadline:
                    break
            job.e2e_ms = (time.perf_counter() - started) * 1000
            if job.status not in TERMINAL:
                job.error = f"still {job.status} after {self.wait_seconds} s"
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
            job.error = f"{type(exc).__name__}: {exc}"
        return job

    async def open_loop(self, jobs: Sequence[Deploy], *, rate: float) -> list[Deploy]:
        """Start job i at t0 + i/rate, never waiting for earlier ones; return them all once finished."""
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        tasks: list[asyncio.Task[Deploy]] = []
        for i, job in enumerate(jobs):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            job.start_lag_ms = max(0.0, (loop.time() - due) * 1000)
            tasks.append(asyncio.create_task(self.deploy(job)))
        return list(await asyncio.gather(*tasks))

    async def closed_loop(self, jobs: Sequence[Deploy], *, concurrency: int) -> list[Deploy]:
        """As fast as `concurrency` deploys in flight allow (warm-up: tokens, caches, namespaces)."""
        gate = asyncio.Semaphore(concurrency)

        async def one(job: Deploy) -> Deploy:
            async with gate:
                return await self.deploy(job)

        return list(await asyncio.gather(*(one(j) for j in jobs)))

    async def fetch_timings(self, jobs: Sequence[Deploy], *, concurrency: int = 16) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(job: Deploy) -> None:
            if not job.deployment_id:
                return
            async with (
                gate,
                self.session.get(
                    f"{self.orchestrator_url}/v1/deployments/{job.deployment_id}",
                    headers={"Authorization": f"Bearer {job.target.key or self.admin_token}"},
                ) as resp,
            ):
                if resp.status != 200:
                    return
                view = await resp.json()
            job.timings = {
                point: datetime.fromisoformat(value).timestamp()
                for point, value in (view.get("timings") or {}).items()
                if point in POINTS
            }

        await asyncio.gather(*(one(j) for j in jobs))


def plan(targets: Sequence[Target], *, count: int, first_round: int = 1) -> list[Deploy]:
    """`count` deploys over `targets` round-robin; each round flips the tag, so every deploy rolls out."""
    return [
        Deploy(target=targets[i % len(targets)], tag=TAGS[(first_round + i // len(targets)) % 2])
        for i in range(count)
    ]


def analyse(jobs: Sequence[Deploy], *, rate: float | None, elapsed_s: float) -> dict[str, Any]:
    """Summaries in milliseconds: end to end, the webhook's 202, every hop, and the slowest hop."""
    done = [j for j in jobs if j.ok]
    errors: dict[str, int] = {}
    for job in jobs:
        if not job.ok:
            key = job.error.split(":")[0] if job.error else f"status {job.status}"
            errors[key] = errors.get(key, 0) + 1
    hops: dict[str, list[float]] = {name: [] for name in HOPS}
    for job in done:
        for name, value in job.hops_ms().items():
            hops[name].append(value)
    means = {name: sum(values) / len(values) for name, values in hops.items() if values}
    slowest = max(means, key=lambda name: means[name]) if means else None
    hop_summaries = {name: {**summary(values), "what": HOPS[name][2]} for name, values in hops.items()}
    return {
        "deploys": len(jobs),
        "succeeded": len(done),
        "errors": errors,
        "rate_per_s": rate,
        "achieved_per_s": round(len(jobs) / elapsed_s, 1) if elapsed_s else None,
        "components": len({j.target.component + "@" + j.target.org for j in jobs}),
        "dataplanes": len({j.target.dataplane_id for j in jobs}),
        "e2e_ms": summary([j.e2e_ms for j in done]),
        "webhook_ms": summary([j.webhook_ms for j in done]),
        "start_lag_ms": summary([j.start_lag_ms for j in jobs]),
        "hops_ms": hop_summaries,
        "slowest_hop": slowest,
    }


def raise_if_failed(jobs: Sequence[Deploy], when: str) -> None:
    failed = [j for j in jobs if not j.ok]
    if failed:
        raise BenchError(f"{len(failed)} deploys failed {when}, e.g. {failed[0].error or failed[0].status}")


async def warm_up(driver: Driver, targets: Sequence[Target], when: str) -> list[Deploy]:
    """One deploy per component, waited for: tokens, caches and namespaces are then warm."""
    done = await driver.closed_loop(plan(targets, count=len(targets), first_round=0), concurrency=16)
    raise_if_failed(done, when)
    return done


async def measure(
    run: Run,
    driver: Driver,
    targets: list[Target],
    *,
    deploys: int,
    rate: float,
    pids: dict[str, int],
    warm: bool = True,
) -> dict[str, Any]:
    """Warm up, then the open-loop run; with the CPU each process spent per deploy during the run."""
    warmed = await warm_up(driver, targets, "in the warm-up") if warm else []
    run.clock.say(f"warm: {len(warmed)} deploys; now {deploys} deploys at {rate:g}/s")
    jobs = plan(targets, count=deploys)
    pids = {**pids, "bench driver": os.getpid()}
    cpu_before = footprint.cpu(pids)
    started = time.monotonic()
    await driver.open_loop(jobs, rate=rate)
    elapsed = time.monotonic() - started
    cpu_after = footprint.cpu(pids)
    await driver.fetch_timings(jobs)
    result = analyse(jobs, rate=rate, elapsed_s=elapsed)
    result["warmup_deploys"] = len(warmed)
    result["cpu_ms_per_deploy"] = cpu_per_deploy(cpu_before, cpu_after, deploys)
    spent = sum(cpu_after[name] - cpu_before[name] for name in pids)
    result["cpu_busy"] = round(spent / elapsed / (os.cpu_count() or 1), 3)
    e2e = result["e2e_ms"]
    run.clock.say(
        f"{result['succeeded']}/{deploys} succeeded; p50 {e2e.get('p50')} p95 {e2e.get('p95')} "
        f"p99 {e2e.get('p99')} ms; slowest hop: {result['slowest_hop']}"
    )
    return result


def cpu_per_deploy(before: dict[str, float], after: dict[str, float], deploys: int) -> dict[str, float]:
    """Milliseconds of CPU each process spent per deploy between two `footprint.cpu` samples."""
    spent = {name: after[name] - before[name] for name in before}
    result = {name: round(1000 * v / deploys, 2) for name, v in spent.items()}
    result["total"] = round(1000 * sum(spent.values()) / deploys, 2)
    return result


CONFIG_P50_RATIO_TARGET = 1.10
CONFIG_ROUNDS = 4
BENCH_CONFIG: dict[str, Any] = {
    "replicas": 1,
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    "env": {"BENCH_MODE": "config"},
    "probes": {"readiness": {"path": "/", "period_seconds": 10}},
}


async def configure(admin: Admin, targets: Sequence[Target], environment: str) -> None:
    """A config with a secret for each target in `environment` (the webhook's first one)."""

    async def one(target: Target) -> None:
        body = {**BENCH_CONFIG, "secrets": {"BENCH_SECRET": secrets.token_urlsafe(24)}}
        path = f"/v1/orgs/{target.org}/projects/default/components/{target.component}"
        await admin.call("orchestrator", "PUT", f"{path}/environments/{environment}/config", body)

    await provision.gather_all(list(targets), one)


async def measure_config(run: Run, driver: Driver, admin: Admin) -> dict[str, Any]:
    """Half the components configured (with a secret), half not; the halves take turns (plain
    first and last, `CONFIG_ROUNDS` configured turns), each an open loop at the unloaded rate (see
    the module docstring); the ratio is the configured deploys' p50 over the plain ones'."""
    size = run.plan
    registries = await admin.call("credentials", "GET", "/v1/orgs/default/registries")
    registry_id = next(r["id"] for r in registries["items"] if r["display_name"] == "bench registry")
    image = f"{run.stack.registry.host}/{REPOSITORY}:1.0"
    plane = run.stack.state["provisioned"]["dataplane_id"]
    targets: list[Target] = await provision.gather_all(
        [f"cfg{i:04d}" for i in range(size.latency_components)],
        lambda name: provision.component(
            admin, "default", "default", name, registry_id=registry_id, image=image, dataplane_id=plane
        ),
    )
    environments = await admin.call("orchestrator", "GET", "/v1/orgs/default/environments")
    pids = {**run.pids, "bench driver": os.getpid()}
    configured, plain = targets[::2], targets[1::2]
    run.clock.say(
        f"latency with config: {len(configured)} of {len(targets)} components get config and a secret"
    )
    await configure(admin, configured, environments["items"][0]["name"])
    await warm_up(driver, targets, "after the configs")  # also supersedes the configs' own rollouts
    # One group at a time, at the same rate: the groups share the data plane's agent (up to
    # LANDFALL_CONCURRENCY components at once), so a slower apply of configured deploys would also
    # delay plain ones sent beside them. The groups take turns in short rounds (plain, configured,
    # plain, ...; plain last too), so that a busy machine's drift (a checkpoint, a compaction, a
    # neighbour's burst) falls on both instead of passing as the cost of config.
    count = max(len(configured), size.unloaded_deploys)
    turns = [("without_config", plain), ("with_config", configured)] * CONFIG_ROUNDS
    turns.append(("without_config", plain))
    # Whole rounds over a group per turn, each turn going on from the tag the last one left.
    per_turn = {
        "with_config": len(configured) * max(1, round(count / CONFIG_ROUNDS / len(configured))),
        "without_config": len(plain) * max(1, round(count / (CONFIG_ROUNDS + 1) / len(plain))),
    }
    jobs_of: dict[str, list[Deploy]] = {"without_config": [], "with_config": []}
    elapsed_of = dict.fromkeys(jobs_of, 0.0)
    cpu_of: dict[str, dict[str, float]] = {name: dict.fromkeys(pids, 0.0) for name in jobs_of}
    rounds: list[dict[str, Any]] = []
    for name, group in turns:
        jobs = plan(group, count=per_turn[name], first_round=1 + len(jobs_of[name]) // len(group))
        cpu_before = footprint.cpu(pids)
        started = time.monotonic()
        await driver.open_loop(jobs, rate=size.unloaded_rate)
        elapsed_of[name] += time.monotonic() - started
        cpu_after = footprint.cpu(pids)
        for proc in pids:
            cpu_of[name][proc] += cpu_after[proc] - cpu_before[proc]
        await driver.fetch_timings(jobs)
        jobs_of[name].extend(jobs)
        rounds.append({"group": name, "p50_ms": summary([j.e2e_ms for j in jobs if j.ok]).get("p50")})
    phases: dict[str, dict[str, Any]] = {}
    for name, jobs in jobs_of.items():
        phases[name] = analyse(jobs, rate=size.unloaded_rate, elapsed_s=elapsed_of[name])
        # Where a configured deploy's extra time goes: each process's CPU per deploy, per group.
        phases[name]["cpu_ms_per_deploy"] = cpu_per_deploy(dict.fromkeys(pids, 0.0), cpu_of[name], len(jobs))
    p50_with = phases["with_config"]["e2e_ms"].get("p50")
    p50_without = phases["without_config"]["e2e_ms"].get("p50")
    ratio = round(p50_with / p50_without, 3) if p50_with and p50_without else None
    run.clock.say(
        f"with config p50 {p50_with} ms, without {p50_without} ms over {CONFIG_ROUNDS} rounds: ratio {ratio}"
    )
    return {**phases, "rounds": rounds, "p50_ratio": ratio, "target_ratio": CONFIG_P50_RATIO_TARGET}


async def make_targets(run: Run, admin: Admin) -> None:
    """`run.targets`: the components the latency part and the later parts deploy."""
    stack, size = run.stack, run.plan
    run.clock.say(f"latency: creating {size.latency_components} components")
    run.targets = await provision.latency_components(
        admin,
        count=size.latency_components,
        registry_host=stack.registry.host,
        repository=REPOSITORY,
        dataplane_id=stack.state["provisioned"]["dataplane_id"],
    )


async def _part(run: Run) -> None:
    stack, size = run.stack, run.plan
    async with run.session() as session:
        admin = Admin.for_stack(session, stack)
        driver = Driver.for_run(session, run)
        await make_targets(run, admin)
        run.result["latency"] = await measure(
            run, driver, run.targets, deploys=size.latency_deploys, rate=size.latency_rate, pids=run.pids
        )
        # The same path at a rate far below capacity: what each hop costs without queueing.
        run.result["latency_unloaded"] = await measure(
            run,
            driver,
            run.targets,
            deploys=size.unloaded_deploys,
            rate=size.unloaded_rate,
            pids=run.pids,
            warm=False,
        )
        run.result["latency_config"] = await measure_config(run, driver, admin)


def part(run: Run) -> None:
    """`latency`, `latency_unloaded` and `latency_config`; leaves the components of the first two
    in `run.targets`."""
    asyncio.run(_part(run))
