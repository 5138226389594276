"""The `audit_events` table: who did what to which registry, and how it went. Never a secret.

Events outlive their registry (a deleted registry keeps its history). Pages are
keyset-paginated on the bigserial id, newest first.
"""

from __future__ import annotations

from typing import Any

from libs.runtime.store import Repo
from services.credentials.domain import AuditAction, AuditEvent

_COLUMNS = "id, org, registry_id, action, actor, outcome, detail, at"
DETAIL_MAX = 500


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        org=row["org"],
        registry_id=row["registry_id"],
        action=row["action"],
        actor=row["actor"],
        outcome=row["outcome"],
        detail=row["detail"],
        at=row["at"],
    )


class AuditRepo(Repo):
    async def add(
        self, *, org: str, registry_id: str, action: AuditAction, actor: str, outcome: str, detail: str = ""
    ) -> None:
        async with self.guard():
            await self.db.execute(
                "INSERT INTO audit_events (org, registry_id, action, actor, outcome, detail) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                org,
                registry_id,
                action,
                actor,
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
        return [_event(r) for r in rows]
