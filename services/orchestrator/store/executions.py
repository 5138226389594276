"""Executions: one run of a manual task with the image of one of its deployments.

What is subtle: `lock_state` reads an execution's status with `FOR UPDATE` so
that the move which follows in the same transaction (`set_status`) is decided
against the status it replaces (the rule itself is `execution_may_move`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.orchestrator.domain.records import Component, DataPlane, Deployment, Execution
from services.orchestrator.store.base import PendingRepo, row_decoder
from services.orchestrator.store.components import component_from
from services.orchestrator.store.dataplanes import dataplane_from
from services.orchestrator.store.deployments import deployment_from

execution_from = row_decoder(Execution, json_columns={"args"})


@dataclass(frozen=True, slots=True)
class ExecutionState:
    status: str
    deployment_id: str
    dataplane_id: str | None


class Executions(PendingRepo[Execution]):
    table = "executions"
    newest_first = "created_at DESC, id DESC"
    oldest_first = "created_at"

    decode = staticmethod(execution_from)

    async def create(self, *, id: str, deployment: Deployment, args: list[str]) -> Execution:
        execution = await self.one(
            "INSERT INTO executions (id, deployment_id, component_id, environment, args, status)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, 'pending') RETURNING *",
            id,
            deployment.id,
            deployment.component_id,
            deployment.environment,
            json.dumps(args),
        )
        assert execution is not None
        return execution

    async def dispatch_context(
        self, execution_id: str
    ) -> tuple[Execution, Deployment, Component, DataPlane | None] | None:
        """An execution with the deployment whose image it runs, its component and data plane."""
        async with self.guard():
            e = await self.db.fetchrow("SELECT * FROM executions WHERE id = $1", execution_id)
            if e is None:
                return None
            d = await self.db.fetchrow("SELECT * FROM deployments WHERE id = $1", e["deployment_id"])
            component = await self.db.fetchrow("SELECT * FROM components WHERE id = $1", e["component_id"])
            plane = await self.db.fetchrow(
                "SELECT * FROM dataplanes WHERE id = $1", d["dataplane_id"] if d else None
            )
        if d is None or component is None:
            return None
        return (
            execution_from(e),
            deployment_from(d),
            component_from(component),
            dataplane_from(plane) if plane else None,
        )

    async def lock_state(self, execution_id: str) -> ExecutionState | None:
        """Its status, deployment and data plane, locked until the transaction ends."""
        row = await self.row(
            "SELECT e.status, e.deployment_id, d.dataplane_id FROM executions e"
            " JOIN deployments d ON d.id = e.deployment_id WHERE e.id = $1 FOR UPDATE OF e",
            execution_id,
        )
        if row is None:
            return None
        return ExecutionState(row["status"], row["deployment_id"], row["dataplane_id"])

    async def set_status(
        self, execution_id: str, *, status: str, reason: str | None, message: str | None
    ) -> Execution | None:
        return await self.one(
            "UPDATE executions SET status = $2, reason = $3, message = $4, updated_at = now(),"
            " dispatched_at = CASE WHEN $2 = 'dispatched' THEN now()"
            " ELSE COALESCE(dispatched_at, now()) END,"
            " finished_at = CASE WHEN $2 IN ('succeeded', 'failed') THEN now() END"
            " WHERE id = $1 RETURNING *",
            execution_id,
            status,
            reason,
            message,
        )
