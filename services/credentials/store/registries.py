"""The `registries` table: metadata only, never a password, a config or a token.

What is subtle: `secret_version` is the pointer to the Vault version in use, so
the row decides which credentials are current; a Vault write whose commit then
failed is never read. `lock` (SELECT ... FOR UPDATE) serialises a rotation or a
delete against another one of the same registry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from libs.runtime.store import Repo
from services.credentials.domain import Registry, ValidatedAuth

_COLUMNS = (
    "id, org, display_name, host, auth_type, username, vendor, warnings, secret_version, "
    "created_at, updated_at"
)


def _registry(row: Any) -> Registry:
    warnings = row["warnings"]
    if isinstance(warnings, str):
        warnings = json.loads(warnings)
    return Registry(**{**dict(row), "warnings": [str(w) for w in warnings]})


class RegistryRepo(Repo):
    constraint_fields = {"registries_display_name": "display_name"}

    async def get(self, org: str, registry_id: str, *, for_update: bool = False) -> Registry | None:
        lock = " FOR UPDATE" if for_update else ""
        async with self.guard():
            row = await self.db.fetchrow(
                f"SELECT {_COLUMNS} FROM registries WHERE org = $1 AND id = $2{lock}", org, registry_id
            )
        return _registry(row) if row is not None else None

    async def in_org(self, org: str) -> list[Registry]:
        async with self.guard():
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM registries WHERE org = $1 ORDER BY created_at, id", org
            )
        return [_registry(r) for r in rows]

    async def insert(
        self,
        *,
        id: str,
        org: str,
        display_name: str,
        auth: ValidatedAuth,
        now: datetime,
    ) -> Registry:
        """A new row for `auth` (its host, type, user name, vendor and warnings, never its
        password), without a secret version yet (raises `Duplicate("display_name")`)."""
        async with self.guard():
            row = await self.db.fetchrow(
                f"INSERT INTO registries ({_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, NULL, $9, $9) "
                f"RETURNING {_COLUMNS}",
                id,
                org,
                display_name,
                auth.host,
                auth.auth_type,
                auth.username,
                auth.vendor,
                json.dumps(list(auth.warnings)),
                now,
            )
        return _registry(row)

    async def update(
        self,
        registry_id: str,
        *,
        display_name: str,
        username: str | None,
        warnings: Sequence[str],
        secret_version: int | None,
        now: datetime,
    ) -> Registry:
        async with self.guard():
            row = await self.db.fetchrow(
                "UPDATE registries SET display_name = $2, username = $3, warnings = $4::jsonb, "
                f"secret_version = $5, updated_at = $6 WHERE id = $1 RETURNING {_COLUMNS}",
                registry_id,
                display_name,
                username,
                json.dumps(list(warnings)),
                secret_version,
                now,
            )
        return _registry(row)

    async def delete(self, registry_id: str) -> None:
        async with self.guard():
            await self.db.execute("DELETE FROM registries WHERE id = $1", registry_id)
