"""PostgreSQL adapter (the only module that speaks SQL; tables live in the credentials schema).

Rows hold metadata only: no password, config or token ever reaches a column.

What is subtle: `transaction()` hands the caller a `Tx` and commits only when
the caller's block ends without an exception, so the caller can write Vault
*inside* the transaction (between its statements and the commit) and learn
whether the commit itself failed: a commit failure raises out of the `async
with`, after the block's last line ran. Connection problems anywhere are
`DatabaseUnavailable` (503 + Retry-After).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from libs.runtime.db import unavailable_on_connection_errors


class DuplicateName(Exception):
    """Another registry of the org already has this display name."""


@dataclass(frozen=True, slots=True)
class RegistryRow:
    id: str
    org: str
    display_name: str
    host: str
    auth_type: str
    username: str | None
    vendor: str | None
    warnings: list[str]
    secret_version: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    org: str
    registry_id: str
    action: str
    actor: str
    outcome: str
    detail: str
    at: datetime


_REGISTRY_COLUMNS = (
    "id, org, display_name, host, auth_type, username, vendor, warnings, secret_version, "
    "created_at, updated_at"
)
_AUDIT_COLUMNS = "id, org, registry_id, action, actor, outcome, detail, at"


def _registry(row: Any) -> RegistryRow:
    warnings = row["warnings"]
    if isinstance(warnings, str):
        warnings = json.loads(warnings)
    return RegistryRow(
        id=row["id"],
        org=row["org"],
        display_name=row["display_name"],
        host=row["host"],
        auth_type=row["auth_type"],
        username=row["username"],
        vendor=row["vendor"],
        warnings=[str(w) for w in warnings],
        secret_version=row["secret_version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _audit(row: Any) -> AuditRow:
    return AuditRow(
        id=row["id"],
        org=row["org"],
        registry_id=row["registry_id"],
        action=row["action"],
        actor=row["actor"],
        outcome=row["outcome"],
        detail=row["detail"],
        at=row["at"],
    )


@contextlib.contextmanager
def _duplicate_name() -> Any:
    try:
        yield
    except asyncpg.exceptions.UniqueViolationError as exc:
        if getattr(exc, "constraint_name", None) == "registries_display_name":
            raise DuplicateName from None
        raise


class Tx:
    """Statements inside one transaction (see `Repository.transaction`)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def insert_registry(
        self,
        *,
        id: str,
        org: str,
        display_name: str,
        host: str,
        auth_type: str,
        username: str | None,
        vendor: str | None,
        warnings: Sequence[str],
        now: datetime,
    ) -> RegistryRow:
        with _duplicate_name():
            async with unavailable_on_connection_errors():
                row = await self.conn.fetchrow(
                    f"INSERT INTO registries ({_REGISTRY_COLUMNS}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, NULL, $9, $9) "
                    f"RETURNING {_REGISTRY_COLUMNS}",
                    id,
                    org,
                    display_name,
                    host,
                    auth_type,
                    username,
                    vendor,
                    json.dumps(list(warnings)),
                    now,
                )
        return _registry(row)

    async def lock(self, org: str, registry_id: str) -> RegistryRow | None:
        async with unavailable_on_connection_errors():
            row = await self.conn.fetchrow(
                f"SELECT {_REGISTRY_COLUMNS} FROM registries WHERE org = $1 AND id = $2 FOR UPDATE",
                org,
                registry_id,
            )
        return _registry(row) if row is not None else None

    async def update(
        self,
        registry_id: str,
        *,
        display_name: str,
        username: str | None,
        warnings: Sequence[str],
        secret_version: int | None,
        now: datetime,
    ) -> RegistryRow:
        with _duplicate_name():
            async with unavailable_on_connection_errors():
                row = await self.conn.fetchrow(
                    "UPDATE registries SET display_name = $2, username = $3, warnings = $4::jsonb, "
                    f"secret_version = $5, updated_at = $6 WHERE id = $1 RETURNING {_REGISTRY_COLUMNS}",
                    registry_id,
                    display_name,
                    username,
                    json.dumps(list(warnings)),
                    secret_version,
                    now,
                )
        return _registry(row)

    async def delete(self, registry_id: str) -> None:
        async with unavailable_on_connection_errors():
            await self.conn.execute("DELETE FROM registries WHERE id = $1", registry_id)

    async def audit(
        self, *, org: str, registry_id: str, action: str, actor: str, outcome: str, detail: str = ""
    ) -> None:
        async with unavailable_on_connection_errors():
            await _insert_audit(self.conn, org, registry_id, action, actor, outcome, detail)


async def _insert_audit(
    conn: Any, org: str, registry_id: str, action: str, actor: str, outcome: str, detail: str
) -> None:
    await conn.execute(
        "INSERT INTO audit_events (org, registry_id, action, actor, outcome, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        org,
        registry_id,
        action,
        actor,
        outcome,
        detail[:500],
    )


class Repository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with unavailable_on_connection_errors():
            conn = await self.pool.acquire()
        try:
            tx = conn.transaction()
            async with unavailable_on_connection_errors():
                await tx.start()
            try:
                yield Tx(conn)
            except BaseException:
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
            async with unavailable_on_connection_errors():
                await tx.commit()
        finally:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    async def get(self, org: str, registry_id: str) -> RegistryRow | None:
        async with unavailable_on_connection_errors():
            row = await self.pool.fetchrow(
                f"SELECT {_REGISTRY_COLUMNS} FROM registries WHERE org = $1 AND id = $2", org, registry_id
            )
        return _registry(row) if row is not None else None

    async def list_registries(self, org: str) -> list[RegistryRow]:
        async with unavailable_on_connection_errors():
            rows = await self.pool.fetch(
                f"SELECT {_REGISTRY_COLUMNS} FROM registries WHERE org = $1 ORDER BY created_at, id", org
            )
        return [_registry(r) for r in rows]

    async def audit(
        self, *, org: str, registry_id: str, action: str, actor: str, outcome: str, detail: str = ""
    ) -> None:
        async with unavailable_on_connection_errors():
            await _insert_audit(self.pool, org, registry_id, action, actor, outcome, detail)

    async def audit_events(
        self, org: str, *, registry_id: str | None, before: int | None, limit: int
    ) -> list[AuditRow]:
        """Newest first; `before` is an event id (keyset pagination)."""
        async with unavailable_on_connection_errors():
            rows = await self.pool.fetch(
                f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE org = $1 "
                "AND ($2::text IS NULL OR registry_id = $2) AND ($3::bigint IS NULL OR id < $3) "
                "ORDER BY id DESC LIMIT $4",
                org,
                registry_id,
                before,
                limit,
            )
        return [_audit(r) for r in rows]
