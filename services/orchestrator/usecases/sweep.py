"""The sweeper: dispatch again what is pending and due, after an outage, a crash or a deferral.

Every `sweep_interval_seconds` it claims (leases) due deployments, executions
and teardowns and dispatches them, a few at a time; what fails stays due again
after its deferral or its lease. Replicas share the work through the leases.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from libs.runtime.errors import DependencyUnavailable
from services.orchestrator.store import Store
from services.orchestrator.usecases.dispatch import Dispatcher
from services.orchestrator.usecases.teardowns import Teardowns

log = logging.getLogger(__name__)

# Longer than one dispatch can take (two RPCs and a JetStream publish, 5 s timeouts each).
LEASE_SECONDS = 30.0


@dataclass(kw_only=True, eq=False)
class Sweeper:
    store: Store
    dispatcher: Dispatcher
    teardowns: Teardowns

    async def sweep(self, *, limit: int = 50, concurrency: int = 8) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(work: Callable[[], Awaitable[None]], what: str) -> None:
            async with gate:
                try:
                    await work()
                except DependencyUnavailable as exc:
                    log.warning("sweep: dependency unavailable", extra={"id": what, "error": str(exc)})
                except Exception:
                    log.exception("sweep: dispatch failed", extra={"id": what})

        repos = self.store.now
        deployments = await repos.deployments.claim_due(limit, lease_seconds=LEASE_SECONDS)
        executions = await repos.executions.claim_due(limit, lease_seconds=LEASE_SECONDS)
        teardowns = await repos.teardowns.claim_due(limit, lease_seconds=LEASE_SECONDS)
        await asyncio.gather(
            *(one(functools.partial(self.dispatcher.dispatch, i), i) for i in deployments),
            *(one(functools.partial(self.dispatcher.dispatch_execution, i), i) for i in executions),
            one(functools.partial(self.teardowns.send, teardowns), "teardowns"),
        )

    async def forever(self, *, interval: float) -> None:
        while True:
            try:
                await self.sweep()
            except DependencyUnavailable as exc:
                log.warning("sweeper: dependency unavailable", extra={"error": str(exc)})
            await asyncio.sleep(interval)
