"""Data planes: enrollment tokens (stored as sha256 only), agent keys and heartbeats.

What is subtle: `enroll` consumes the token in the same UPDATE that stores the
agent's key, so a second use (or two agents racing with one token) finds
nothing; an expired token finds nothing either.
"""

from __future__ import annotations

from services.orchestrator.domain.records import DataPlane
from services.orchestrator.store.base import RecordRepo, row_decoder

dataplane_from = row_decoder(DataPlane)


class DataPlanes(RecordRepo[DataPlane]):
    constraint_fields = {"dataplanes_org_name_key": "name"}

    decode = staticmethod(dataplane_from)

    async def create(
        self,
        *,
        id: str,
        org: str,
        name: str,
        ingress_class: str | None,
        token_sha256: str,
        token_ttl_seconds: float,
    ) -> DataPlane:
        plane = await self.one(
            "INSERT INTO dataplanes (id, org, name, ingress_class, enrollment_token_sha256,"
            " enrollment_expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))"
            " RETURNING *",
            id,
            org,
            name,
            ingress_class,
            token_sha256,
            token_ttl_seconds,
        )
        assert plane is not None
        return plane

    async def of_org(self, org: str) -> list[DataPlane]:
        return await self.many("SELECT * FROM dataplanes WHERE org = $1 ORDER BY name", org)

    async def get(self, dataplane_id: str, *, org: str | None = None) -> DataPlane | None:
        return await self.one(
            "SELECT * FROM dataplanes WHERE id = $1 AND ($2::text IS NULL OR org = $2)", dataplane_id, org
        )

    async def set_enrollment_token(
        self, *, org: str, dataplane_id: str, token_sha256: str, token_ttl_seconds: float
    ) -> DataPlane | None:
        return await self.one(
            "UPDATE dataplanes SET enrollment_token_sha256 = $3,"
            " enrollment_expires_at = now() + make_interval(secs => $4)"
            " WHERE org = $1 AND id = $2 RETURNING *",
            org,
            dataplane_id,
            token_sha256,
            token_ttl_seconds,
        )

    async def by_enrollment_token(self, token_sha256: str) -> DataPlane | None:
        return await self.one("SELECT * FROM dataplanes WHERE enrollment_token_sha256 = $1", token_sha256)

    async def enroll(
        self, *, token_sha256: str, public_key: str, version: str, nats_user_public_key: str | None
    ) -> tuple[DataPlane, str | None] | None:
        """Consume a one-time token (atomically: a second use finds nothing) and store the keys.
        An expired token finds nothing either. Also answers the NATS user key it replaced."""
        row = await self.row(
            "WITH old AS (SELECT id, nats_user_public_key FROM dataplanes WHERE enrollment_token_sha256 = $1"
            " FOR UPDATE)"
            " UPDATE dataplanes d SET enrollment_token_sha256 = NULL, enrollment_expires_at = NULL,"
            " public_key = $2, enrolled_at = now(), agent_version = $3, nats_user_public_key = $4"
            " FROM old WHERE d.id = old.id"
            " AND (d.enrollment_expires_at IS NULL OR d.enrollment_expires_at > now())"
            " RETURNING d.*, old.nats_user_public_key AS previous_nats_user_public_key",
            token_sha256,
            public_key,
            version,
            nats_user_public_key,
        )
        if row is None:
            return None
        return dataplane_from(row), row["previous_nats_user_public_key"]

    async def environments_using(self, dataplane_id: str) -> list[str]:
        rows = await self.rows(
            "SELECT name FROM environments WHERE dataplane_id = $1 ORDER BY name", dataplane_id
        )
        return [str(r["name"]) for r in rows]

    async def delete(self, *, org: str, dataplane_id: str) -> DataPlane | None:
        return await self.one(
            "DELETE FROM dataplanes WHERE org = $1 AND id = $2 RETURNING *", org, dataplane_id
        )

    async def revoke_nats_user(self, *, user_public_key: str, dataplane_id: str) -> None:
        await self.execute(
            "INSERT INTO nats_revocations (user_public_key, dataplane_id) VALUES ($1, $2)"
            " ON CONFLICT (user_public_key) DO NOTHING",
            user_public_key,
            dataplane_id,
        )

    async def claim_push(self, now: int) -> int:
        """The `iat` of the next account JWT push: above every earlier one. Its row lock, held until
        the transaction ends, makes pushes from every replica one after the other."""
        row = await self.row(
            "UPDATE nats_account_pushes SET last_iat = GREATEST($1, last_iat + 1) RETURNING last_iat", now
        )
        assert row is not None  # the migration made the row
        return int(row["last_iat"])

    async def enrolled_ids(self) -> list[str]:
        rows = await self.rows("SELECT id FROM dataplanes WHERE public_key IS NOT NULL ORDER BY id")
        return [str(r["id"]) for r in rows]

    async def forget_revocations(self, *, older_than_seconds: float) -> list[str]:
        """Drop revocations older than that (every JWT they revoked has expired): the keys dropped."""
        rows = await self.rows(
            "DELETE FROM nats_revocations WHERE revoked_at < now() - make_interval(secs => $1)"
            " RETURNING user_public_key",
            float(older_than_seconds),
        )
        return [str(r["user_public_key"]) for r in rows]

    async def nats_revocations(self) -> dict[str, int]:
        """Every revoked NATS user key -> when (unix seconds), for the account JWT."""
        rows = await self.rows(
            "SELECT user_public_key, ceil(extract(epoch FROM revoked_at))::bigint AS at FROM nats_revocations"
        )
        return {str(r["user_public_key"]): int(r["at"]) for r in rows}

    async def record_heartbeat(self, *, dataplane_id: str, version: str) -> None:
        await self.execute(
            "UPDATE dataplanes SET last_seen = now(), agent_version = $2 WHERE id = $1",
            dataplane_id,
            version,
        )
