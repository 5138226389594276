"""Part 1, crashes: webhooks at a steady rate while the driver kills and restarts, then reconcile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chaos import config_changes, driver, evidence, load, reconcile
from chaos.provision import PROJECT, Fleet, provision
from chaos.stack import ChaosStack

S = TypeVar("S")


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What a run under kills sends: `webhooks` at `rate` over `components` of `tags` tags each."""

    components: int
    webhooks: int
    rate: float
    tags: int
    seed: int = 7
    settle_timeout: float = 300.0

    @property
    def duration(self) -> float:
        return self.webhooks / self.rate


@dataclass(frozen=True, kw_only=True)
class CrashPlan(Plan):
    kills: driver.Kills
    # Config PUTs (replicas, env, a secret set, changed or deleted) round robin over the first
    # `configured` components, spread over the run.
    config_changes: int = 0
    configured: int = 0


FULL = CrashPlan(
    components=200,
    webhooks=10_000,
    rate=20.0,
    tags=4,
    kills=driver.Kills(singles_each=2, pairs=4, agent_away=True),
    config_changes=100,
    configured=20,
)
# Every target once, short: the agent and the Kubernetes API (the sandbox) away, credentials and
# OpenBao killed (so private deploys wait for their pull secrets), and PostgreSQL with the
# orchestrator together. The rate is low enough that webhooks arrive through all of it.
QUICK = CrashPlan(
    components=20,
    webhooks=300,
    rate=3.0,
    tags=3,
    settle_timeout=150.0,
    kills=driver.Kills(
        singles_each=1,
        pairs=1,
        agent_away=False,
        targets=(
            "nats",
            "postgres",
            "orchestrator",
            "webhook_gateway",
            "credentials",
            "openbao",
            "data_plane_agent",
            driver.KUBE_API,
        ),
        down=(1.0, 3.0),
    ),
    config_changes=12,
    configured=4,
)


@dataclass(kw_only=True)
class Outcome:
    """What a run under kills found: the gateway's answers, the reconciliation, the outage timeline."""

    plan: Plan
    tally: load.Tally
    result: reconcile.Reconciliation
    outages: list[driver.Outage]
    driver_failures: list[str]
    fleet: Fleet = field(repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def unavailable_outside_outages(self) -> int:
        return driver.outside(self.outages, self.tally.answers_503_at)

    @property
    def figures(self) -> dict[str, Any]:
        return {
            "webhooks": self.plan.webhooks,
            "components": self.plan.components,
            **self.result.figures,
            **self.tally.figures,
            "503_outside_outages": self.unavailable_outside_outages,
            "kills": [o.event.label for o in self.outages],
            "driver_failures": self.driver_failures,
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
        }

    @property
    def samples(self) -> dict[str, Any]:
        return {**self.result.samples(), **self.tally.samples()}

    @property
    def ok(self) -> bool:
        return (
            self.result.ok
            and self.tally.five_hundreds == 0
            and self.tally.unavailable_without_retry_after == 0
            and not self.tally.unexpected
            and not self.driver_failures
        )


@dataclass(kw_only=True)
class CrashResult(Outcome):
    plan: CrashPlan
    changes: list[config_changes.Change] = field(default_factory=list, repr=False)
    config_tally: config_changes.ConfigTally = field(default_factory=config_changes.ConfigTally)

    @property
    def figures(self) -> dict[str, Any]:
        r = self.result
        return {
            **super().figures,
            "config_changes": r.config_changes,
            "config_lost": len(r.config_lost),
            "config_doubled": len(r.config_doubled),
            "wrong_config": len(r.wrong_config),
            "config_responses": {str(k): v for k, v in sorted(self.config_tally.responses.items())},
            "config_5xx": self.config_tally.five_hundreds,
            "config_refused": [f for c in self.changes for f in c.failures],
            "deployment_writes": r.deployment_writes,
        }

    @property
    def samples(self) -> dict[str, Any]:
        r = self.result
        return {
            **super().samples,
            "config_lost": r.config_lost[:20],
            "config_doubled": r.config_doubled[:20],
            "wrong_config": r.wrong_config[:20],
            "config_server_errors": self.config_tally.server_errors[:20],
        }

    @property
    def ok(self) -> bool:
        return (
            super().ok and self.config_tally.five_hundreds == 0 and not any(c.failures for c in self.changes)
        )


@dataclass(kw_only=True)
class Run:
    """What a run under kills (this module's `run`, `cluster.run`) is made of: the fleet it
    provisioned, the webhooks planned for it, the seconds each phase took; `beside` sends while a
    driver kills, `judge` reconciles what that left."""

    chaos: ChaosStack
    plan: Plan
    project: str
    say: Callable[[str], None]
    fleet: Fleet
    hooks: list[load.Webhook]
    seconds: dict[str, float]

    @classmethod
    async def provisioned(
        cls, chaos: ChaosStack, plan: Plan, *, project: str, say: Callable[[str], None]
    ) -> Run:
        began = time.monotonic()
        fleet = await provision(chaos, components=plan.components, tags=plan.tags, project=project)
        hooks = load.plan(fleet.targets, plan.webhooks, seed=plan.seed)
        seconds = {"provision": time.monotonic() - began}
        return cls(
            chaos=chaos, plan=plan, project=project, say=say, fleet=fleet, hooks=hooks, seconds=seconds
        )

    async def beside(self, kills: driver.Driver, sending: Awaitable[S]) -> S:
        """What `sending` returns, awaited while `kills` kills and restarts (`webhooks_and_kills`)."""
        began = time.monotonic()
        sent = await kills.beside(sending)
        self.seconds["webhooks_and_kills"] = time.monotonic() - began
        return sent

    async def judge(self, changes: Sequence[config_changes.Change] = ()) -> reconcile.Reconciliation:
        return await evidence.reconcile(
            self.chaos.stack,
            project=self.project,
            targets=self.fleet.targets,
            hooks=self.hooks,
            timeout=self.plan.settle_timeout,
            seconds=self.seconds,
            say=self.say,
            changes=changes,
        )


async def run(
    chaos: ChaosStack,
    plan: CrashPlan,
    *,
    say: Callable[[str], None] = print,
    project: str = PROJECT,
    during: Callable[[], Awaitable[Any]] | None = None,
) -> CrashResult:
    """The crash run of `plan` in `project`; `during` runs beside the webhooks (a planted fault)."""
    stack = chaos.stack
    run = await Run.provisioned(chaos, plan, project=project, say=say)
    fleet, hooks = run.fleet, run.hooks
    say(f"provisioned {plan.components} components with {plan.tags} tags each")

    events = driver.schedule(plan.duration, plan.kills, seed=plan.seed)
    kills = driver.Driver(stack, events, say=say)
    say(
        f"sending {plan.webhooks} webhooks at {plan.rate:g}/s (~{plan.duration:.0f} s) "
        f"with {len(events)} kill events"
    )

    async def send() -> tuple[load.Tally, list[config_changes.Change], config_changes.ConfigTally]:
        began = time.monotonic()
        sending = load.run(stack.url("webhook_gateway"), hooks, rate=plan.rate, progress=say)
        configuring = config_changes.run(
            stack.url("orchestrator"),
            stack.org_key or stack.admin_token,
            project,
            fleet.targets[: plan.configured],
            changes=plan.config_changes if plan.configured else 0,
            duration=plan.duration,
            seed=plan.seed,
        )
        if during is None:
            tally, (changes, config_tally, planted) = await asyncio.gather(sending, configuring)
        else:
            tally, (changes, config_tally, planted), _ = await asyncio.gather(sending, configuring, during())
        fleet.secrets |= planted
        say(f"{sum(len(c.answered) for c in changes)} config changes answered")
        run.seconds["webhooks"] = time.monotonic() - began
        return tally, changes, config_tally

    tally, changes, config_tally = await run.beside(kills, send())
    return CrashResult(
        plan=plan,
        tally=tally,
        result=await run.judge(changes),
        outages=kills.outages,
        driver_failures=kills.failures,
        fleet=fleet,
        changes=changes,
        config_tally=config_tally,
        seconds=run.seconds,
    )
