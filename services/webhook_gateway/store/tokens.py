"""CI tokens in PostgreSQL: only the SHA-256 of a token and its first 12 characters are kept.

`touch` writes last_used_at at most once per interval per token, in one
statement that also returns whether the token was revoked meanwhile: that
write doubles as the periodic re-validation of cached tokens.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from libs.runtime.store import Repo
from services.webhook_gateway.domain.records import Binding, TokenRow

_COLUMNS = (
    "id, org, project, component, name, token_prefix, token_sha256, created_at, expires_at, "
    "revoked_at, last_used_at, component_id"
)


def _token(row: Any) -> TokenRow:
    return TokenRow(
        id=row["id"],
        binding=Binding(row["org"], row["project"], row["component"]),
        name=row["name"],
        token_prefix=row["token_prefix"],
        token_sha256=bytes(row["token_sha256"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        component_id=row["component_id"],
    )


class TokenRepo(Repo):
    async def insert(self, token: TokenRow) -> None:
        async with self.guard():
            await self.db.execute(
                f"INSERT INTO ci_tokens ({_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                token.id,
                *token.binding.parts(),
                token.name,
                token.token_prefix,
                token.token_sha256,
                token.created_at,
                token.expires_at,
                token.revoked_at,
                token.last_used_at,
                token.component_id,
            )

    async def of_component(self, binding: Binding) -> list[TokenRow]:
        """Every token made under the component's name, newest first (callers filter by identity)."""
        async with self.guard():
            rows = await self.db.fetch(
                f"SELECT {_COLUMNS} FROM ci_tokens WHERE org = $1 AND project = $2 AND component = $3 "
                "ORDER BY created_at DESC, id DESC",
                *binding.parts(),
            )
        return [_token(r) for r in rows]

    async def revoke(self, binding: Binding, token_id: str) -> TokenRow | None:
        """Mark the token revoked (idempotent); None if it is not this component's."""
        async with self.guard():
            row = await self.db.fetchrow(
                "UPDATE ci_tokens SET revoked_at = coalesce(revoked_at, now()) "
                "WHERE id = $1 AND org = $2 AND project = $3 AND component = $4 "
                f"RETURNING {_COLUMNS}",
                token_id,
                *binding.parts(),
            )
        return _token(row) if row is not None else None

    async def by_hash(self, digest: bytes) -> TokenRow | None:
        async with self.guard():
            row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM ci_tokens WHERE token_sha256 = $1", digest)
        return _token(row) if row is not None else None

    async def touch(
        self, token_id: str, *, min_interval: timedelta
    ) -> tuple[datetime | None, datetime | None] | None:
        """Set last_used_at unless it was set within `min_interval`; return (revoked_at, expires_at)."""
        async with self.guard():
            row = await self.db.fetchrow(
                "WITH t AS (SELECT revoked_at, expires_at FROM ci_tokens WHERE id = $1), "
                "u AS (UPDATE ci_tokens SET last_used_at = now() WHERE id = $1 "
                "      AND (last_used_at IS NULL OR last_used_at < now() - $2::interval) RETURNING 1) "
                "SELECT t.revoked_at, t.expires_at, (SELECT count(*) FROM u) AS touched FROM t",
                token_id,
                min_interval,
            )
        return (row["revoked_at"], row["expires_at"]) if row is not None else None
