"""Org API keys: the digest is the look-up key; a revoked key keeps its row (the audit trail names it).

What is subtle: a name is unique among the org's keys that are not revoked (a partial unique
index), and revoking is idempotent: it returns the row whether it was revoked now or before, so a
DELETE retried after a lost broadcast announces it again.
"""

from __future__ import annotations

from services.orchestrator.domain.access import ApiKey
from services.orchestrator.store.base import RecordRepo, row_decoder

api_key_from = row_decoder(ApiKey)


class ApiKeys(RecordRepo[ApiKey]):
    constraint_fields = {"api_keys_org_name_live": "name", "api_keys_key_sha256_key": "key"}

    decode = staticmethod(api_key_from)

    async def create(self, key: ApiKey) -> ApiKey:
        created = await self.one(
            "INSERT INTO api_keys (id, org, name, role, key_sha256, key_prefix, created_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            key.id,
            key.org,
            key.name,
            key.role,
            key.key_sha256,
            key.key_prefix,
            key.created_at,
            key.expires_at,
        )
        assert created is not None
        return created

    async def of_org(self, org: str) -> list[ApiKey]:
        return await self.many("SELECT * FROM api_keys WHERE org = $1 ORDER BY created_at DESC, id DESC", org)

    async def by_digest(self, key_sha256: bytes) -> ApiKey | None:
        return await self.one("SELECT * FROM api_keys WHERE key_sha256 = $1", key_sha256)

    async def revoke(self, org: str, key_id: str) -> ApiKey | None:
        """Mark the org's key revoked (the first time only); None if the org has no such key."""
        return await self.one(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())"
            " WHERE org = $1 AND id = $2 RETURNING *",
            org,
            key_id,
        )
