"""Per-environment config secrets in Vault KV v2, written and destroyed, never read.

One path per component and environment, `<mount>/<prefix>/config/<org>/<project>/<component>/<environment>`,
holds `{NAME: value}`. The orchestrator's token is write-only there (libs/devstack/vault_policies.py):
it takes values from a `PUT …/config`, hands them to Vault and keeps only the names and the KV
version in `environment_configs`; the credentials service reads that version to seal it to a data
plane. What is subtle:

* A change is a KV v2 `PATCH` (`KvStore.patch`): a string sets, `None` deletes, an absent name
  keeps, and Vault merges without this service ever seeing the other values.
* The version Vault answers is what the config row pins, so a later write never changes what an
  older deployment (a rollback, a redeploy) seals.
"""

from __future__ import annotations

from collections.abc import Mapping

from libs.runtime.vault import KvStore


class ConfigSecrets:
    def __init__(self, kv: KvStore) -> None:
        self.kv = kv

    def path(self, org: str, project: str, component: str, environment: str) -> str:
        return self.kv.path("config", org, project, component, environment)

    async def change(
        self, org: str, project: str, component: str, environment: str, changes: Mapping[str, str | None]
    ) -> int:
        """Apply `changes` to the environment's secrets; the new KV version."""
        return await self.kv.patch(
            self.path(org, project, component, environment), changes, what="write config secrets"
        )

    async def destroy(self, org: str, project: str, component: str, environment: str) -> None:
        """Every version; an environment without secrets is fine."""
        await self.kv.destroy(self.path(org, project, component, environment), what="destroy config secrets")
