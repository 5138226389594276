"""CI, many times over: webhooks at a steady rate, retried the way a well-behaved CI job retries.

Each webhook is one logical request with its own `Idempotency-Key`. A 503 is
retried after its `Retry-After` (a 503 without one is counted as a violation),
a 429 likewise, a dropped or refused connection (the gateway was just killed)
after half a second; every retry carries the same key, so one webhook can
never become two deployments. A 202 ends it. Any other answer ends it too and
is reported (a 4xx here means the driver or the stack is wrong; a 500 is a bug).
Every answer is counted by status code, including the ones that were retried.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.client import read_body, retry_after
from chaos.provision import Target


@dataclass
class Webhook:
    index: int
    target: Target = field(repr=False)
    tag: str
    key: str
    sent_at: float = 0.0
    deployment_id: str | None = None
    attempts: int = 0
    last_status: int | None = None
    gave_up: str | None = None


@dataclass
class Tally:
    """Every answer the gateway gave, and what was wrong with any of them."""

    responses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    unavailable_without_retry_after: int = 0
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    answers_503_at: list[float] = field(default_factory=list)

    @property
    def five_hundreds(self) -> int:
        return sum(n for status, n in self.responses.items() if status >= 500 and status != 503)

    @property
    def figures(self) -> dict[str, Any]:
        return {
            "responses": {str(k): v for k, v in sorted(self.responses.items())},
            "5xx": self.five_hundreds,
            "503_without_retry_after": self.unavailable_without_retry_after,
            "connection_errors": self.connection_errors,
        }

    def samples(self, most: int = 20) -> dict[str, Any]:
        return {"server_errors": self.server_errors[:most], "unexpected": self.unexpected[:most]}


def plan(targets: list[Target], count: int, *, seed: int) -> list[Webhook]:
    """`count` webhooks spread evenly over the components (shuffled), each with a tag of its component."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible plan, not a secret
    order = [targets[i % len(targets)] for i in range(count)]
    rng.shuffle(order)
    rounds: Counter[str] = Counter()
    hooks = []
    for index, target in enumerate(order):
        tags = target.tags
        tag = tags[rounds[target.name] % len(tags)]
        rounds[target.name] += 1
        hooks.append(Webhook(index=index, target=target, tag=tag, key=f"chaos-{seed}-{index}"))
    return hooks


async def send(
    session: aiohttp.ClientSession, url: str, hook: Webhook, tally: Tally, *, patience: float
) -> None:
    body = json.dumps({"tag": hook.tag}).encode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    hook.sent_at = time.monotonic()
    while True:
        hook.attempts += 1
        headers = {
            "Authorization": f"Bearer {hook.target.token}",
            "Content-Type": "application/json",
            "Idempotency-Key": hook.key,
            **hook.target.signature_headers(body),
        }
        wait = 0.5
        try:
            async with session.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
            ) as resp:
                payload = await read_body(resp)
                status = resp.status
                hook.last_status = status
                tally.responses[status] += 1
                if status == 202:
                    hook.deployment_id = payload["deployment_id"]
                    return
                if status == 503:
                    tally.answers_503_at.append(time.monotonic())
                    if "Retry-After" not in resp.headers:
                        tally.unavailable_without_retry_after += 1
                    wait = retry_after(resp.headers)
                elif status == 429:
                    wait = retry_after(resp.headers)
                elif status >= 500:
                    tally.server_errors.append({"webhook": hook.index, "status": status, "body": payload})
                    wait = 1.0
                else:
                    tally.unexpected.append({"webhook": hook.index, "status": status, "body": payload})
                    hook.gave_up = f"answered {status}"
                    return
        except (aiohttp.ClientConnectionError, TimeoutError):
            tally.connection_errors += 1
        if loop.time() + wait > deadline:
            hook.gave_up = f"no 202 within {patience:g} s (last answer {hook.last_status})"
            return
        await asyncio.sleep(wait)


async def run(
    gateway_url: str,
    hooks: list[Webhook],
    *,
    rate: float,
    patience: float = 600.0,
    max_in_flight: int = 256,
    progress: Any = None,
) -> Tally:
    """Send `hooks` open-loop at `rate` per second (at most `max_in_flight` waiting at once)."""
    tally = Tally()
    url = gateway_url + "/v1/webhooks/deploy"
    gate = asyncio.Semaphore(max_in_flight)
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks: list[asyncio.Task[None]] = []

        async def one(hook: Webhook) -> None:
            try:
                await send(session, url, hook, tally, patience=patience)
            finally:
                gate.release()

        for i, hook in enumerate(hooks):
            delay = started + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            tasks.append(asyncio.create_task(one(hook), name=f"chaos-webhook-{hook.index}"))
            if progress is not None and (i + 1) % max(1, len(hooks) // 20) == 0:
                progress(f"sent {i + 1}/{len(hooks)} webhooks")
        await asyncio.gather(*tasks)
    return tally
