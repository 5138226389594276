"""Per-environment configuration: an append-only list of versions per (component, environment).

What is subtle:

* A version is never changed: `add` inserts the next one (`max + 1` in the same statement). Two
  changes racing for the same number collide on the primary key; the loser gets `Duplicate`, which
  the use case answers as a conflict to retry, never as a silent overwrite.
* No row holds a secret's value, only names and the Vault KV version that holds the values.
* `lock` (inside a transaction) serialises the changes of one environment's config, Vault write
  included: two racing PUTs must not patch Vault in one order and record in the other, or the
  next version would carry the loser's values.
"""

from __future__ import annotations

import json
from typing import Any

from services.orchestrator.domain.records import EnvironmentConfig
from services.orchestrator.store.base import RecordRepo, row_decoder

config_from = row_decoder(EnvironmentConfig, json_columns={"body", "secret_names"})


class EnvironmentConfigs(RecordRepo[EnvironmentConfig]):
    constraint_fields = {"environment_configs_pkey": "version"}

    decode = staticmethod(config_from)

    async def get(
        self, component_id: str, environment: str, version: int | None = None
    ) -> EnvironmentConfig | None:
        """That version, or without one the current (newest) version; None while the environment
        was never configured (the defaults), or for a version it does not have."""
        return await self.one(
            "SELECT * FROM environment_configs WHERE component_id = $1 AND environment = $2"
            " AND ($3::int IS NULL OR version = $3) ORDER BY version DESC LIMIT 1",
            component_id,
            environment,
            version,
        )

    async def lock(self, component_id: str, environment: str) -> None:
        """Hold the (component, environment) config lock until the transaction ends."""
        await self.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1), hashtext('config/' || $2))", component_id, environment
        )

    async def add(
        self,
        component_id: str,
        environment: str,
        *,
        body: dict[str, Any],
        secret_names: list[str],
        secrets_version: int | None,
        created_by: str | None,
    ) -> EnvironmentConfig:
        """Store the next version (raises `Duplicate("version")` if another change took it first)."""
        added = await self.one(
            "INSERT INTO environment_configs"
            " (component_id, environment, version, body, secret_names, secrets_version, created_by)"
            " SELECT $1, $2, COALESCE(max(version), 0) + 1, $3::jsonb, $4::jsonb, $5, $6"
            " FROM environment_configs WHERE component_id = $1 AND environment = $2"
            " RETURNING *",
            component_id,
            environment,
            json.dumps(body),
            json.dumps(secret_names),
            secrets_version,
            created_by,
        )
        assert added is not None, "INSERT ... SELECT max() always yields one row"
        return added
