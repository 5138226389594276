"""PostgreSQL adapter (the only module that speaks SQL; tables live in the gateway's schema).

What is subtle:
- Accepting a webhook commits first and publishes after: one transaction does
  the Idempotency-Key check, the webhook-id replay check and the insert of the
  accepted request; only once that is committed is the `ImagePushed` stored on
  JetStream (a callback, `Nats-Msg-Id` = deployment id), then the row is marked
  published. The other order (publish inside the transaction) was found wrong by
  `make chaos`: when PostgreSQL died between the publish and the COMMIT, CI got a
  503, the image was deployed anyway, and CI's retry with the same key became a
  second deployment. Now a retry with the key finds the committed row, publishes
  it again if it was not marked published (JetStream drops the duplicate, the
  orchestrator records a deployment id once) and answers the same 202. A publish
  that fails removes the row again (best effort), so a 503 leaves nothing behind.
  Only rows with an Idempotency-Key are marked published (nothing else reads the
  mark), and a request with neither key nor webhook-id is a single INSERT.
- Two concurrent requests with the same Idempotency-Key: the second INSERT
  waits on the unique index until the first commits, then finds its row and
  answers with the same deployment (publishing it too if needed: one copy).
- last_used_at is written at most once per interval per token, by a single
  statement that also returns whether the token was revoked meanwhile, which
  makes that write double as a periodic re-validation of cached tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from libs.runtime.db import unavailable_on_connection_errors
from libs.runtime.errors import DependencyUnavailable
from services.webhook_gateway.model import AcceptedRow, AcceptOutcome, Binding, TokenRow

_TOKEN_COLUMNS = (
    "id, org, project, component, name, token_prefix, token_sha256, created_at, expires_at, "
    "revoked_at, last_used_at, component_id"
)
_ACCEPTED_COLUMNS = "deployment_id, token_id, org, project, component, image, idempotency_key, created_at"


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


def _accepted(row: Any) -> AcceptedRow:
    return AcceptedRow(
        deployment_id=row["deployment_id"],
        token_id=row["token_id"],
        binding=Binding(row["org"], row["project"], row["component"]),
        image=row["image"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
    )


class Repository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- tokens ----------------------------------------------------------------------------

    async def insert_token(self, token: TokenRow) -> None:
        b = token.binding
        async with unavailable_on_connection_errors():
            await self.pool.execute(
                f"INSERT INTO ci_tokens ({_TOKEN_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                token.id,
                b.org,
                b.project,
                b.component,
                token.name,
                token.token_prefix,
                token.token_sha256,
                token.created_at,
                token.expires_at,
                token.revoked_at,
                token.last_used_at,
                token.component_id,
            )

    async def list_tokens(self, binding: Binding) -> list[TokenRow]:
        async with unavailable_on_connection_errors():
            rows = await self.pool.fetch(
                f"SELECT {_TOKEN_COLUMNS} FROM ci_tokens WHERE org = $1 AND project = $2 AND component = $3 "
                "ORDER BY created_at DESC, id DESC",
                binding.org,
                binding.project,
                binding.component,
            )
        return [_token(r) for r in rows]

    async def revoke_token(self, binding: Binding, token_id: str) -> TokenRow | None:
        """Mark the token revoked (idempotent); None if it is not this component's."""
        async with unavailable_on_connection_errors():
            row = await self.pool.fetchrow(
                "UPDATE ci_tokens SET revoked_at = coalesce(revoked_at, now()) "
                "WHERE id = $1 AND org = $2 AND project = $3 AND component = $4 "
                f"RETURNING {_TOKEN_COLUMNS}",
                token_id,
                binding.org,
                binding.project,
                binding.component,
            )
        return _token(row) if row is not None else None

    async def token_by_hash(self, digest: bytes) -> TokenRow | None:
        async with unavailable_on_connection_errors():
            row = await self.pool.fetchrow(
                f"SELECT {_TOKEN_COLUMNS} FROM ci_tokens WHERE token_sha256 = $1", digest
            )
        return _token(row) if row is not None else None

    async def touch_token(
        self, token_id: str, *, min_interval: timedelta
    ) -> tuple[datetime | None, datetime | None] | None:
        """Set last_used_at unless it was set within `min_interval`; return (revoked_at, expires_at)."""
        async with unavailable_on_connection_errors():
            row = await self.pool.fetchrow(
                "WITH t AS (SELECT revoked_at, expires_at FROM ci_tokens WHERE id = $1), "
                "u AS (UPDATE ci_tokens SET last_used_at = now() WHERE id = $1 "
                "      AND (last_used_at IS NULL OR last_used_at < now() - $2::interval) RETURNING 1) "
                "SELECT t.revoked_at, t.expires_at, (SELECT count(*) FROM u) AS touched FROM t",
                token_id,
                min_interval,
            )
        return (row["revoked_at"], row["expires_at"]) if row is not None else None

    # --- accepted requests -----------------------------------------------------------------

    async def accept(
        self,
        row: AcceptedRow,
        *,
        idempotency_ttl: timedelta,
        webhook_id: str | None,
        replay_window: timedelta,
        publish: Callable[[AcceptedRow], Awaitable[None]],
    ) -> tuple[AcceptOutcome, AcceptedRow]:
        """Record `row` (or find the request it retries), then have `publish` store it on JetStream."""
        outcome, stored, published = await self._reserve(
            row, idempotency_ttl=idempotency_ttl, webhook_id=webhook_id, replay_window=replay_window
        )
        if outcome in ("key_mismatch", "webhook_replayed") or published:
            return outcome, stored
        try:
            await publish(stored)
        except DependencyUnavailable:
            if outcome == "created":
                await self._release(stored, webhook_id)
            raise
        if stored.idempotency_key is not None:  # only a retry with the key reads the mark
            with contextlib.suppress(DependencyUnavailable):  # the event is stored: a 202 either way
                await self._mark_published(stored.deployment_id)
        return outcome, stored

    async def _reserve(
        self,
        row: AcceptedRow,
        *,
        idempotency_ttl: timedelta,
        webhook_id: str | None,
        replay_window: timedelta,
    ) -> tuple[AcceptOutcome, AcceptedRow, bool]:
        """The committed part of accepting: (outcome, the stored row, whether it is known published)."""
        b = row.binding
        if row.idempotency_key is None and webhook_id is None:
            # Nothing to check first: one INSERT, which needs no transaction of its own.
            async with unavailable_on_connection_errors():
                await self.pool.execute(
                    f"INSERT INTO accepted_deployments ({_ACCEPTED_COLUMNS}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    row.deployment_id,
                    row.token_id,
                    b.org,
                    b.project,
                    b.component,
                    row.image,
                    None,
                    row.created_at,
                )
            return "created", row, False
        async with (
            unavailable_on_connection_errors(),
            self.pool.acquire() as conn,
            conn.transaction(),
        ):
            if row.idempotency_key is not None:
                existing = await self._live_key(conn, b, row.idempotency_key, idempotency_ttl)
                if existing is not None:
                    found, published = existing
                    return ("replayed" if found.image == row.image else "key_mismatch"), found, published
            if webhook_id is not None:
                fresh = await conn.fetchval(
                    "INSERT INTO seen_webhook_ids (org, project, component, webhook_id) "
                    "VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (org, project, component, webhook_id) DO UPDATE SET seen_at = now() "
                    "WHERE seen_webhook_ids.seen_at < now() - $5::interval RETURNING 1",
                    b.org,
                    b.project,
                    b.component,
                    webhook_id,
                    replay_window,
                )
                if not fresh:
                    return "webhook_replayed", row, False
            inserted = await conn.fetchrow(
                f"INSERT INTO accepted_deployments ({_ACCEPTED_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (org, project, component, idempotency_key) WHERE idempotency_key IS NOT NULL "
                f"DO NOTHING RETURNING {_ACCEPTED_COLUMNS}",
                row.deployment_id,
                row.token_id,
                b.org,
                b.project,
                b.component,
                row.image,
                row.idempotency_key,
                row.created_at,
            )
            if inserted is None:
                # A concurrent request with the same key committed first (we waited for it).
                assert row.idempotency_key is not None
                winner = await self._live_key(conn, b, row.idempotency_key, idempotency_ttl)
                if winner is None:  # pragma: no cover - the conflicting row was just committed
                    raise RuntimeError("idempotency conflict without a visible row")
                found, published = winner
                return ("replayed" if found.image == row.image else "key_mismatch"), found, published
        return "created", row, False

    async def _mark_published(self, deployment_id: str) -> None:
        async with unavailable_on_connection_errors():
            await self.pool.execute(
                "UPDATE accepted_deployments SET published_at = now() "
                "WHERE deployment_id = $1 AND published_at IS NULL",
                deployment_id,
            )

    async def _release(self, row: AcceptedRow, webhook_id: str | None) -> None:
        """Undo a reservation whose publish failed, so that the 503 leaves nothing behind (best effort:
        if PostgreSQL is gone too, a retry with the same Idempotency-Key publishes the row it finds)."""
        b = row.binding
        with contextlib.suppress(DependencyUnavailable):
            async with unavailable_on_connection_errors(), self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "DELETE FROM accepted_deployments WHERE deployment_id = $1 AND published_at IS NULL",
                    row.deployment_id,
                )
                if webhook_id is not None:
                    await conn.execute(
                        "DELETE FROM seen_webhook_ids "
                        "WHERE org = $1 AND project = $2 AND component = $3 AND webhook_id = $4",
                        b.org,
                        b.project,
                        b.component,
                        webhook_id,
                    )

    async def _live_key(
        self, conn: asyncpg.Connection, b: Binding, key: str, ttl: timedelta
    ) -> tuple[AcceptedRow, bool] | None:
        """The live request with this key, and whether it is known to be published."""
        found = await conn.fetchrow(
            f"SELECT {_ACCEPTED_COLUMNS}, published_at IS NOT NULL AS published, "
            "created_at < now() - $5::interval AS expired "
            "FROM accepted_deployments "
            "WHERE org = $1 AND project = $2 AND component = $3 AND idempotency_key = $4 FOR UPDATE",
            b.org,
            b.project,
            b.component,
            key,
            ttl,
        )
        if found is None:
            return None
        if found["expired"]:
            # The key may be reused: free it (the old row stays for the status endpoint).
            await conn.execute(
                "UPDATE accepted_deployments SET idempotency_key = NULL WHERE deployment_id = $1",
                found["deployment_id"],
            )
            return None
        return _accepted(found), bool(found["published"])

    async def accepted(self, deployment_id: str) -> AcceptedRow | None:
        async with unavailable_on_connection_errors():
            row = await self.pool.fetchrow(
                f"SELECT {_ACCEPTED_COLUMNS} FROM accepted_deployments WHERE deployment_id = $1",
                deployment_id,
            )
        return _accepted(row) if row is not None else None

    # --- signatures ------------------------------------------------------------------------

    async def signing_required(self, binding: Binding) -> datetime | None:
        """When signatures became required for the component, or None if they are not."""
        async with unavailable_on_connection_errors():
            value: datetime | None = await self.pool.fetchval(
                "SELECT created_at FROM signing_required WHERE org = $1 AND project = $2 AND component = $3",
                binding.org,
                binding.project,
                binding.component,
            )
        return value

    @contextlib.asynccontextmanager
    async def require_signing(self, binding: Binding) -> AsyncIterator[datetime]:
        """Mark the component as requiring signatures; committed only if the block succeeds."""
        async with unavailable_on_connection_errors(), self.pool.acquire() as conn, conn.transaction():
            created: datetime = await conn.fetchval(
                "INSERT INTO signing_required (org, project, component) VALUES ($1, $2, $3) "
                "ON CONFLICT (org, project, component) DO UPDATE SET created_at = now() RETURNING created_at",
                binding.org,
                binding.project,
                binding.component,
            )
            yield created

    @contextlib.asynccontextmanager
    async def stop_signing(self, binding: Binding) -> AsyncIterator[bool]:
        """Remove the requirement; yields whether there was one; committed only if the block succeeds."""
        async with unavailable_on_connection_errors(), self.pool.acquire() as conn, conn.transaction():
            existed = await conn.fetchval(
                "DELETE FROM signing_required WHERE org = $1 AND project = $2 AND component = $3 RETURNING 1",
                binding.org,
                binding.project,
                binding.component,
            )
            yield bool(existed)

    async def prune(self, *, replay_window: timedelta) -> int:
        async with unavailable_on_connection_errors():
            status: str = await self.pool.execute(
                "DELETE FROM seen_webhook_ids WHERE seen_at < now() - $1::interval", replay_window
            )
        return int(status.rsplit(" ", 1)[-1])
