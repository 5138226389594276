"""Looking registries up, in one org.

A registry of another org, or an id that is not a registry id at all, does not
exist (the same 404 / `not_found`): tenants cannot probe each other's ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.contracts.ids import looks_like
from libs.runtime.errors import NotFound
from services.credentials.domain import Registry
from services.credentials.store import Uow


def unknown(registry_id: str) -> NotFound:
    return NotFound(f"registry {registry_id[:40]!r}")


@dataclass
class Catalog:
    uow: Uow

    async def find(self, org: str, registry_id: str) -> Registry | None:
        if not looks_like("reg", registry_id):
            return None
        return await self.uow.now.registries.get(org, registry_id)

    async def get(self, org: str, registry_id: str) -> Registry:
        registry = await self.find(org, registry_id)
        if registry is None:
            raise unknown(registry_id)
        return registry

    async def list_registries(self, org: str) -> list[Registry]:
        return await self.uow.now.registries.in_org(org)
