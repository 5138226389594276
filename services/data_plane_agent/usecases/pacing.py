"""How the agent waits: in place while Kubernetes is down, and never in step with other agents.

`while_kube_unavailable` is the order rule: a command that cannot be applied
because the API server is unreachable (or answers 429/5xx) is retried where it
is, and `keep_alive` (+WPI on the JetStream message) keeps it from being
redelivered meanwhile. With `max_ack_pending=1` that holds back every later
command of the data plane too: order beats latency. A request the API server
rejects for good (`KubeRejected`) is not retried here; the caller decides.

`jittered` shortens a timer by up to 20 % at random, so agents started
together (after an outage, or many in one process) drift apart instead of
polling NATS and beating, and being written, all in the same instant.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..clients.kube import KubeUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

KeepAlive = Callable[[], Awaitable[None]]


async def while_kube_unavailable(
    work: Callable[[], Awaitable[T]], *, keep_alive: KeepAlive, waiting: str, ids: dict[str, str]
) -> T:
    """`work`, again and again (backing off to 10 s) while the Kubernetes API is unreachable."""
    delay = 0.5
    while True:
        try:
            return await work()
        except KubeUnavailable as exc:
            log.warning(waiting, extra={**ids, "error": str(exc)})
        await keep_alive()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


def jittered(seconds: float) -> float:
    """`seconds`, up to 20 % less at random (timing jitter, not a secret)."""
    return seconds * random.uniform(0.8, 1.0)  # noqa: S311
