"""Part 1's config changes: per-environment config PUTs (replicas, env, secrets) during the kills.

A few components get a config change every few seconds while the webhooks and the kills go on:
new replicas, a new plain env, and a secret set, changed or deleted. Each answer's
`deployment_id` (the rollout, `source: "config"`) is recorded for `reconcile.judge`, and every
secret value planted here goes to the secret scan.

What is subtle:

* A `PUT` has no Idempotency-Key. A retry after an answer that never arrived (the orchestrator
  killed after its commit) stores one more version (setting a secret always counts as a change)
  and rolls that out too: the driver notes the unanswered attempt, so the judge may explain a
  config deployment whose version no answer named (`Change.unanswered`), but only one per version.
  Killed before its commit, the orchestrator stored neither the version nor its rollout (they
  commit together), so the retry stores and rolls out the change as if it were the first attempt.
* Every change is a full body, so a repeated one ends in the same state: the driver's intent
  (`Change.expected`) is what the data plane must show at the end, whatever was retried.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.client import read_body, retry_after
from chaos.provision import ORG, Target

SECRET_NAMES = ("API_KEY", "DB_PASSWORD", "SESSION_KEY")


@dataclass
class Change:
    """One component's config changes in one environment: what was sent, what was answered."""

    component: str
    environment: str = "development"
    answered: list[dict[str, Any]] = field(default_factory=list)  # version, deployment_id
    unanswered: int = 0  # attempts whose answer never came (the change may have landed)
    replicas: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # the values in force
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def expected(self) -> dict[str, Any]:
        return {"replicas": self.replicas, "env": dict(self.env), "secrets": dict(self.secrets)}


@dataclass
class ConfigTally:
    responses: dict[int, int] = field(default_factory=dict)
    connection_errors: int = 0
    server_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def five_hundreds(self) -> int:
        return sum(n for status, n in self.responses.items() if status >= 500 and status != 503)


def _next_body(change: Change, step: int, rng: random.Random) -> tuple[dict[str, Any], dict[str, str | None]]:
    """The body of change `step`: new replicas and env always; a secret set, changed or deleted."""
    replicas = 1 + step % 3
    env = {"CHAOS_STEP": str(step), "CHAOS_MODE": rng.choice(["a", "b", "c"])}
    name = SECRET_NAMES[step % len(SECRET_NAMES)]
    delta: dict[str, str | None]
    if name in change.secrets and step % 4 == 3:
        delta = {name: None}
    else:
        delta = {name: "cfg-" + secrets.token_urlsafe(18)}
    return {"replicas": replicas, "env": env}, delta


async def _put(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    body: dict[str, Any],
    change: Change,
    tally: ConfigTally,
    *,
    patience: float,
) -> dict[str, Any] | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        wait = 0.5
        try:
            async with session.put(
                url,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                payload = await read_body(resp)
                tally.responses[resp.status] = tally.responses.get(resp.status, 0) + 1
                if resp.status == 200:
                    return dict(payload)
                if resp.status in (429, 503):
                    wait = retry_after(resp.headers)
                elif resp.status >= 500:
                    tally.server_errors.append({"component": change.component, "status": resp.status})
                    change.unanswered += 1  # a 500 may have come after the commit
                    wait = 1.0
                else:
                    change.failures.append({"status": resp.status, "body": payload})
                    return None
        except (aiohttp.ClientConnectionError, TimeoutError):
            tally.connection_errors += 1
            change.unanswered += 1
        if loop.time() + wait > deadline:
            change.failures.append({"status": None, "body": f"no 200 within {patience:g} s"})
            return None
        await asyncio.sleep(wait)


async def run(
    orchestrator_url: str,
    admin_token: str,
    project: str,
    targets: list[Target],
    *,
    changes: int,
    duration: float,
    seed: int,
    patience: float = 300.0,
) -> tuple[list[Change], ConfigTally, set[str]]:
    """`changes` config PUTs spread over `duration` seconds, round robin over `targets`; returns
    each component's changes, the tally of answers and every secret value sent."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible plan, not a secret
    by_name = {t.name: Change(component=t.name) for t in targets}
    tally = ConfigTally()
    planted: set[str] = set()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as session:
        for step in range(changes):
            # The first round lands early, before most deployments (nothing to roll out yet).
            delay = started + (step + 1) * duration / (changes + 1) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            target = targets[step % len(targets)]
            change = by_name[target.name]
            body, delta = _next_body(change, step // len(targets), rng)
            planted |= {v for v in delta.values() if v is not None}
            url = (
                f"{orchestrator_url}/v1/orgs/{ORG}/projects/{project}/components/{target.name}"
                f"/environments/{change.environment}/config"
            )
            answer = await _put(
                session, url, admin_token, {**body, "secrets": delta}, change, tally, patience=patience
            )
            if answer is None:
                continue
            change.replicas, change.env = body["replicas"], body["env"]
            for name, value in delta.items():
                if value is None:
                    change.secrets.pop(name, None)
                else:
                    change.secrets[name] = value
            change.answered.append(
                {"version": answer["version"], "deployment_id": answer.get("deployment_id")}
            )
    return list(by_name.values()), tally, planted
