"""The audit trail as recorded: one row per event id, read newest first in pages.

What is subtle: `insert` is the consumer's idempotence (a redelivered event finds its id and
inserts nothing), and a page reads `LIMIT n + 1` rows so the caller knows whether another page
follows without a second query.
"""

from __future__ import annotations

import asyncpg

from libs.contracts.identity import Actor, AuditEvent
from services.orchestrator.domain.access import AuditFilter
from services.orchestrator.store.base import RecordRepo


def audit_event_from(row: asyncpg.Record) -> AuditEvent:
    actor = Actor(
        type=row["actor_type"],
        id=row["actor_id"],
        name=row["actor_name"],
        component=row["actor_component"],
    )
    return AuditEvent(
        id=row["id"],
        time=row["time"],
        org=row["org"],
        service=row["service"],
        actor=actor,
        action=row["action"],
        target=row["target"],
        outcome=row["outcome"],
        status=row["status"],
        request_id=row["request_id"],
        detail=row["detail"],
    )


class AuditEvents(RecordRepo[AuditEvent]):
    decode = staticmethod(audit_event_from)

    async def insert(self, event: AuditEvent) -> bool:
        """Record the event; False when its id was recorded already (a redelivery)."""
        inserted = await self.value(
            "INSERT INTO audit_events (id, org, time, service, actor_type, actor_id, actor_name,"
            " actor_component, action, target, outcome, status, request_id, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (id) DO NOTHING RETURNING true",
            event.id,
            event.org,
            event.time,
            event.service,
            event.actor.type,
            event.actor.id,
            event.actor.name,
            event.actor.component,
            event.action,
            event.target,
            event.outcome,
            event.status,
            event.request_id,
            event.detail,
        )
        return bool(inserted)

    async def page(self, where: AuditFilter) -> list[AuditEvent]:
        """Up to `where.limit + 1` events, newest first (one more than a page: is there another?)."""
        return await self.many(
            "SELECT * FROM audit_events WHERE org = $1"
            " AND ($2::text IS NULL OR id < $2)"
            " AND ($3::text IS NULL OR action = $3)"
            " AND ($4::text IS NULL OR actor_id = $4)"
            " ORDER BY id DESC LIMIT $5",
            where.org,
            where.before,
            where.action,
            where.actor_id,
            where.limit + 1,
        )
