"""Reports: what an agent says about a rollout (or a run) moves its deployment (or execution) forward.

What is subtle: a report is trusted only for work that was sent to the data
plane it names (the consumer has checked that it came on that plane's own
subject); reports arrive late and more than once, and a move the state machine
refuses is simply nothing (logged with `applied: false`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from libs.contracts.messages import RolloutReport
from services.orchestrator.clients.gateways import Gateways
from services.orchestrator.domain.rules import execution_status_for
from services.orchestrator.store import Store
from services.orchestrator.usecases.executions import move_execution

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class Reports:
    store: Store
    gateways: Gateways

    async def apply(self, report: RolloutReport) -> None:
        if report.kind == "run":
            await self._apply_run(report)
            return
        updated = await self.store.now.deployments.apply_report(
            report.deployment_id,
            dataplane_id=report.dataplane_id,
            status=report.status,
            reason=report.reason,
            message=report.message,
            applied_at=report.applied_at,
            reported_at=report.reported_at,
        )
        log.info(
            "rollout report",
            extra={
                "deployment_id": report.deployment_id,
                "status": report.status,
                "applied": updated is not None,
            },
        )
        if updated is not None:
            await self.gateways.deployment_changed(updated)

    async def _apply_run(self, report: RolloutReport) -> None:
        if report.execution_id is None:
            log.warning("run report without execution id", extra={"deployment_id": report.deployment_id})
            return
        status, reason = execution_status_for(report.status)
        moved = await move_execution(
            self.store,
            report.execution_id,
            status=status,
            reason=report.reason or reason,
            message=report.message,
            dataplane_id=report.dataplane_id,
            deployment_id=report.deployment_id,
        )
        log.info(
            "run report",
            extra={"execution_id": report.execution_id, "status": status, "applied": moved is not None},
        )
