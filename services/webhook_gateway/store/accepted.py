"""Accepted requests and their Idempotency-Keys (`accepted_deployments`).

One live Idempotency-Key per component (a partial unique index); an expired
key is set to NULL before reuse, and its row stays for the status endpoint.
`published_at` marks a row whose `ImagePushed` is known to be on JetStream;
only rows with a key are marked, since only a retry with the key reads it.
How these statements make one request one deployment is `usecases/intake.py`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from libs.runtime.store import Repo
from services.webhook_gateway.domain.records import AcceptedRow, Binding

_COLUMNS = "deployment_id, token_id, org, project, component, image, idempotency_key, created_at"


def _accepted(row: Any) -> AcceptedRow:
    return AcceptedRow(
        deployment_id=row["deployment_id"],
        token_id=row["token_id"],
        binding=Binding(row["org"], row["project"], row["component"]),
        image=row["image"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
    )


class AcceptedRepo(Repo):
    async def insert(self, row: AcceptedRow) -> bool:
        """Insert `row`; False if its Idempotency-Key is live on another row (which then was committed
        first: the unique index makes this INSERT wait for a concurrent one with the same key)."""
        async with self.guard():
            inserted = await self.db.fetchval(
                f"INSERT INTO accepted_deployments ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (org, project, component, idempotency_key) WHERE idempotency_key IS NOT NULL "
                "DO NOTHING RETURNING 1",
                row.deployment_id,
                row.token_id,
                *row.binding.parts(),
                row.image,
                row.idempotency_key,
                row.created_at,
            )
        return bool(inserted)

    async def live_with_key(
        self, binding: Binding, key: str, *, ttl: timedelta
    ) -> tuple[AcceptedRow, bool] | None:
        """The live request with this key (locked) and whether it is known published; frees an expired
        key. Inside a transaction: the lock holds until it ends."""
        async with self.guard():
            found = await self.db.fetchrow(
                f"SELECT {_COLUMNS}, published_at IS NOT NULL AS published, "
                "created_at < now() - $5::interval AS expired "
                "FROM accepted_deployments "
                "WHERE org = $1 AND project = $2 AND component = $3 AND idempotency_key = $4 FOR UPDATE",
                *binding.parts(),
                key,
                ttl,
            )
            if found is None:
                return None
            if found["expired"]:
                await self.db.execute(
                    "UPDATE accepted_deployments SET idempotency_key = NULL WHERE deployment_id = $1",
                    found["deployment_id"],
                )
                return None
        return _accepted(found), bool(found["published"])

    async def mark_published(self, deployment_id: str) -> None:
        async with self.guard():
            await self.db.execute(
                "UPDATE accepted_deployments SET published_at = now() "
                "WHERE deployment_id = $1 AND published_at IS NULL",
                deployment_id,
            )

    async def delete_unpublished(self, deployment_id: str) -> None:
        async with self.guard():
            await self.db.execute(
                "DELETE FROM accepted_deployments WHERE deployment_id = $1 AND published_at IS NULL",
                deployment_id,
            )

    async def get(self, deployment_id: str) -> AcceptedRow | None:
        async with self.guard():
            row = await self.db.fetchrow(
                f"SELECT {_COLUMNS} FROM accepted_deployments WHERE deployment_id = $1", deployment_id
            )
        return _accepted(row) if row is not None else None
