"""Deployments: recorded once, moved forward only, each status write conditional in its WHERE.

What is subtle:

* Recording and superseding the older in-flight deployments of the same
  (component, environment) happen in one round trip, in the PL/pgSQL function
  `record_deployment` (migrations/0005): an advisory lock on the pair, seq drawn
  inside it, acceptance order checked, `INSERT ... ON CONFLICT (id) DO NOTHING`
  (a redelivered intake event is a no-op).
* Every status write names the statuses it may move from (`status = 'pending'`,
  or `deployment_may_move_from` for reports): the row lock the UPDATE takes makes
  concurrent moves apply one after the other, each against what the other left,
  so a late report, a sweeper and an intake racing cannot move one backwards.
* Auto-rollback is exactly once per failed deployment: `claim_rollback` sets its `rolled_back_by`
  only while it is NULL, in the same transaction as the rollback's `record`; a second claim waits
  on the row lock and then finds it taken (the use case does nothing), and a crash leaves neither.
* A digest the agent reports (what the cluster pulled, for a tag it was sent) is stored only
  where none is known: a pinned digest is never replaced by what a data plane says.
* A config rollout reads what runs and records its deployment in the PUT's transaction, under
  `lock` (the same advisory lock `record_deployment` takes), so no webhook is recorded between its
  read and its record. A config rollout re-rolls an image accepted earlier, so its own acceptance
  time does not make an earlier-accepted webhook that is recorded after it superseded
  (migrations/0009): that webhook supersedes the rollout and runs with the new config.
* `claim_due` leases pending rows (`FOR UPDATE SKIP LOCKED`) so another replica's
  sweeper does not pick them too; a crashed attempt is retried after the lease.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from libs.contracts.messages import RolloutReport
from services.orchestrator.domain.records import Component, DataPlane, Deployment, NewDeployment
from services.orchestrator.domain.rules import deployment_may_move_from
from services.orchestrator.store.base import PendingRepo, row_decoder
from services.orchestrator.store.components import component_from
from services.orchestrator.store.dataplanes import dataplane_from

deployment_from = row_decoder(Deployment, json_columns={"notes"})


class Deployments(PendingRepo[Deployment]):
    table = "deployments"
    newest_first = "seq DESC"
    oldest_first = "seq"

    decode = staticmethod(deployment_from)

    async def record(self, new: NewDeployment) -> tuple[Deployment, list[Deployment]] | None:
        """Record `new` and supersede the older in-flight deployments of the same component and
        environment. Returns None (and changes nothing) when the id exists already, or when the
        component was deleted meanwhile."""
        environment = new.environment.name if new.environment else ""
        try:
            rows = await self.many(
                "SELECT * FROM record_deployment($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
                " $14::jsonb, $15, $16, $17, $18)",
                new.id,
                new.component.id,
                new.component.org,
                new.component.project,
                new.component.name,
                environment,
                new.environment.dataplane_id if new.environment else None,
                new.image,
                new.digest,
                new.status,
                new.reason,
                new.message,
                new.source,
                json.dumps(new.notes),
                new.token_prefix,
                new.idempotency_key,
                new.accepted_at,
                new.config_version,
            )
        except asyncpg.ForeignKeyViolationError:
            return None
        recorded = [d for d in rows if d.id == new.id]
        if not recorded:
            return None
        return recorded[0], [d for d in rows if d.id != new.id]

    async def _newest(
        self, component_id: str, environment: str, condition: str, *args: object
    ) -> Deployment | None:
        """The newest deployment of the component in the environment that meets `condition` (an SQL
        condition; its own parameters are `args`, from $3)."""
        return await self.one(
            "SELECT * FROM deployments WHERE component_id = $1 AND environment = $2"
            f" AND {condition} ORDER BY seq DESC LIMIT 1",
            component_id,
            environment,
            *args,
        )

    async def last_succeeded(self, component_id: str, environment: str) -> Deployment | None:
        return await self._newest(component_id, environment, "status = 'succeeded'")

    async def lock(self, component_id: str, environment: str) -> None:
        """Hold, until the transaction ends, the lock `record_deployment` takes on the pair: no
        deployment of this component and environment is recorded meanwhile by anyone else."""
        await self.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", component_id, environment
        )

    async def live(self, component_id: str, environment: str) -> Deployment | None:
        """What runs in the environment or is on its way there: the newest deployment in flight or
        succeeded (a failed or superseded one runs nothing)."""
        in_flight_or_succeeded = "status IN ('pending', 'dispatched', 'progressing', 'succeeded')"
        return await self._newest(component_id, environment, in_flight_or_succeeded)

    async def rollback_target(self, failed: Deployment) -> Deployment | None:
        """What an auto-rollback of `failed` brings back: the environment's newest succeeded
        deployment accepted before it."""
        return await self._newest(
            failed.component_id, failed.environment, "status = 'succeeded' AND seq < $3", failed.seq
        )

    async def newer_than(self, deployment: Deployment) -> str | None:
        """The id of a deployment of the same component and environment recorded after this one."""
        newer = await self._newest(
            deployment.component_id, deployment.environment, "seq > $3", deployment.seq
        )
        return newer.id if newer is not None else None

    async def claim_rollback(self, failed: Deployment, rollback_id: str) -> Deployment | None:
        """Name `rollback_id` as what rolls this failed deployment back; None when another claim
        (a redelivered report, another replica) came first."""
        return await self.one(
            "UPDATE deployments SET rolled_back_by = $2, updated_at = now()"
            " WHERE id = $1 AND status = 'failed' AND rolled_back_by IS NULL RETURNING *",
            failed.id,
            rollback_id,
        )

    async def add_note(self, deployment: Deployment, note: str) -> Deployment | None:
        """Append `note` once (a second call with the same note changes nothing: None)."""
        return await self.one(
            "UPDATE deployments SET notes = notes || jsonb_build_array($2::text), updated_at = now()"
            " WHERE id = $1 AND NOT notes @> jsonb_build_array($2::text) RETURNING *",
            deployment.id,
            note,
        )

    async def succeeded_before(
        self, component_id: str, environment: str, *, image: str, digest: str | None
    ) -> bool:
        """Whether this image (by digest when known) ever ran successfully in the environment."""
        found = await self.value(
            "SELECT 1 FROM deployments WHERE component_id = $1 AND environment = $2"
            " AND status = 'succeeded'"
            " AND (image = $3 OR ($4::text IS NOT NULL AND digest = $4)) LIMIT 1",
            component_id,
            environment,
            image,
            digest,
        )
        return found is not None

    async def running(self, component_ids: Sequence[str]) -> dict[str, dict[str, Deployment]]:
        """Per component, per environment: the newest succeeded deployment (what runs there)."""
        rows = await self.many(
            "SELECT DISTINCT ON (component_id, environment) * FROM deployments"
            " WHERE component_id = ANY($1::text[]) AND status = 'succeeded'"
            " ORDER BY component_id, environment, seq DESC",
            list(component_ids),
        )
        out: dict[str, dict[str, Deployment]] = {}
        for d in rows:
            out.setdefault(d.component_id, {})[d.environment] = d
        return out

    async def targets(self, component_id: str) -> list[tuple[str, str]]:
        """(environment, data plane) pairs the component was ever sent to."""
        rows = await self.rows(
            "SELECT DISTINCT environment, dataplane_id FROM deployments"
            " WHERE component_id = $1 AND dataplane_id IS NOT NULL ORDER BY environment",
            component_id,
        )
        return [(r["environment"], r["dataplane_id"]) for r in rows]

    async def due_now(self, dataplane_id: str) -> None:
        """Work that waited for this data plane (its agent's key) is due now."""
        await self.execute(
            "UPDATE deployments SET next_attempt_at = now() WHERE dataplane_id = $1 AND status = 'pending'",
            dataplane_id,
        )

    async def dispatch_context(
        self, deployment_id: str
    ) -> tuple[Deployment, Component, DataPlane | None] | None:
        """A deployment with what dispatching it needs: its component and its data plane.

        One round trip: the three rows come back as composite values (asyncpg decodes a table's
        row type into a record with the table's column names)."""
        row = await self.row(
            "SELECT d, c, p FROM deployments d JOIN components c ON c.id = d.component_id"
            " LEFT JOIN dataplanes p ON p.id = d.dataplane_id WHERE d.id = $1",
            deployment_id,
        )
        if row is None:
            return None
        plane = row["p"]
        return (
            deployment_from(row["d"]),
            component_from(row["c"]),
            dataplane_from(plane) if plane is not None else None,
        )

    async def set_digest(self, deployment_id: str, digest: str) -> None:
        await self.execute(
            "UPDATE deployments SET digest = $2, updated_at = now() WHERE id = $1 AND status = 'pending'",
            deployment_id,
            digest,
        )

    async def fail_pending(
        self, deployment_id: str, *, reason: str, message: str | None
    ) -> Deployment | None:
        return await self.one(
            "UPDATE deployments SET status = 'failed', reason = $2, message = $3, finished_at = now(),"
            " updated_at = now() WHERE id = $1 AND status = 'pending' RETURNING *",
            deployment_id,
            reason,
            message,
        )

    async def mark_dispatched(
        self, deployment_id: str, *, digest: str | None, notes: list[str], dispatched_at: datetime
    ) -> Deployment | None:
        return await self.one(
            "UPDATE deployments SET status = 'dispatched', digest = COALESCE($2, digest),"
            " notes = $3::jsonb, reason = NULL, dispatched_at = $4, updated_at = now()"
            " WHERE id = $1 AND status = 'pending' RETURNING *",
            deployment_id,
            digest,
            json.dumps(notes),
            dispatched_at,
        )

    async def apply_report(self, report: RolloutReport) -> Deployment | None:
        """Move the report's deployment to its status if the state machine allows and the report
        came from the data plane it was sent to; None when nothing changed.

        One statement (the state machine's rule is in its WHERE): the row lock it takes makes
        concurrent moves of one deployment apply one after the other, each against the status the
        other left."""
        return await self.one(
            "UPDATE deployments SET status = $3, reason = $5, message = $6,"
            " applied_at = COALESCE($7, applied_at), reported_at = $8,"
            " dispatched_at = COALESCE(dispatched_at, $8),"
            " finished_at = CASE WHEN $3 IN ('succeeded', 'failed', 'superseded') THEN now() END,"
            " updated_at = now() WHERE id = $1 AND dataplane_id = $2 AND status = ANY($4::text[])"
            " RETURNING *",
            report.deployment_id,
            report.dataplane_id,
            report.status,
            deployment_may_move_from(report.status),
            report.reason,
            report.message,
            report.applied_at,
            report.reported_at,
        )

    async def set_reported_digest(
        self, deployment_id: str, *, dataplane_id: str, digest: str, note: str
    ) -> Deployment | None:
        """Keep the digest a data plane pulled for a deployment that had none; None when it had one."""
        return await self.one(
            "UPDATE deployments SET digest = $3, notes = notes || jsonb_build_array($4::text),"
            " updated_at = now() WHERE id = $1 AND dataplane_id = $2 AND digest IS NULL RETURNING *",
            deployment_id,
            dataplane_id,
            digest,
            note,
        )
