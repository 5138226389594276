"""The `audit_events` table: who did what to which registry, and how it went. Never a secret.

Events outlive their registry (a deleted registry keeps its history). Pages are
keyset-paginated on the bigserial id, newest first.
"""

from __future__ import annotations

from libs.runtime.store import Repo
from services.credentials.domain import AuditEvent, AuditSubject

_COLUMNS = "id, org, registry_id, action, actor, outcome, detail, at"
DETAIL_MAX = 500


class AuditRepo(Repo):
    async def add(self, subject: AuditSubject, *, outcome: str, detail: str = "") -> None:
        async with self.guard():
            await self.db.execute(
                "INSERT INTO audit_events (org, registry_id, action, actor, outcome, detail) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                subject.org,
                subject.registry_id,
                subject.action,
                subject.actor,
                outcome,
                detail[:DETAIL_MAX],
            )

    async def page(
        self, org: str, *, registry_id: str | None, before: int | None, limit: int
    ) -> list[AuditEvent]:
        """Newest first; `before` is an event id (keyset pagination)."""
        async with self.guard():
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM audit_events WHERE org = $1 "
                "AND ($2::text IS NULL OR registry_id = $2) AND ($3::bigint IS NULL OR id < $3) "
                "ORDER BY id DESC LIMIT $4",
                org,
                registry_id,
                before,
                limit,
            )
        return [AuditEvent(**dict(r)) for r in rows]
