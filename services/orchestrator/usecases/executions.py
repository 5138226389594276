"""Executions: run a manual task once, with the image of its last succeeded deployment there.

What is subtle: an execution moves forward only (`execution_may_move`), and a
report moves it only when it comes from the data plane and deployment it was
sent to; the move reads the status `FOR UPDATE` and writes it in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libs.contracts.ids import new_id
from libs.runtime.errors import Conflict, DependencyUnavailable
from services.orchestrator.domain.records import Component, Execution
from services.orchestrator.domain.rules import execution_may_move
from services.orchestrator.store import Store

if TYPE_CHECKING:
    from services.orchestrator.usecases.dispatch import Dispatcher
    from services.orchestrator.usecases.recording import Recorder

log = logging.getLogger(__name__)


async def move_execution(
    store: Store,
    execution_id: str,
    *,
    status: str,
    reason: str | None,
    message: str | None,
    dataplane_id: str | None = None,
    deployment_id: str | None = None,
) -> Execution | None:
    """Move an execution forward (only); optionally only if it belongs to that data plane/deployment.
    None when it did not move."""
    async with store.transaction() as tx:
        current = await tx.executions.lock_state(execution_id)
        if current is None or not execution_may_move(current.status, status):
            return None
        if dataplane_id is not None and current.dataplane_id != dataplane_id:
            return None
        if deployment_id is not None and current.deployment_id != deployment_id:
            return None
        return await tx.executions.set_status(execution_id, status=status, reason=reason, message=message)


@dataclass(kw_only=True, eq=False)
class Executions:
    store: Store
    recorder: Recorder
    dispatcher: Dispatcher

    async def start(self, component: Component, *, environment: str | None, args: list[str]) -> Execution:
        if component.type != "manual-task":
            raise Conflict(f"only a manual-task can be executed; this component is a {component.type}")
        target, _ = await self.recorder.environment(component.org, environment, field="environment")
        running = await self.store.now.deployments.last_succeeded(component.id, target.name)
        if running is None:
            raise Conflict(f"the task has no succeeded deployment in {target.name!r}; deploy it first")
        execution = await self.store.now.executions.create(id=new_id("exe"), deployment=running, args=args)
        log.info("execution recorded", extra={"execution_id": execution.id, "deployment_id": running.id})
        try:
            await self.dispatcher.dispatch_execution(execution.id)
        except DependencyUnavailable as exc:
            log.warning(
                "execution dispatch deferred", extra={"execution_id": execution.id, "error": str(exc)}
            )
        current = await self.store.now.executions.get(execution.id)
        assert current is not None
        return current

    async def history(self, component: Component, *, environment: str | None, limit: int) -> list[Execution]:
        return await self.store.now.executions.history(component.id, environment=environment, limit=limit)
