"""Orgs: the tenants; every other record is scoped by one."""

from __future__ import annotations

from services.orchestrator.domain.records import Org
from services.orchestrator.store.base import RecordRepo, row_decoder

org_from = row_decoder(Org)


class Orgs(RecordRepo[Org]):
    constraint_fields = {"orgs_pkey": "name"}

    decode = staticmethod(org_from)

    async def create(self, name: str) -> Org:
        return await self.insert_row("orgs", name=name)

    async def get(self, name: str) -> Org | None:
        return await self.one("SELECT * FROM orgs WHERE name = $1", name)
