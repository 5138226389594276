"""Environments: an org's pipeline, in `position` order (the API calls it `order`)."""

from __future__ import annotations

from services.orchestrator.domain.records import Environment
from services.orchestrator.store.base import RecordRepo, row_decoder

environment_from = row_decoder(Environment, columns={"order": "position"})


class Environments(RecordRepo[Environment]):
    constraint_fields = {"environments_org_name_key": "name", "environments_org_position_key": "order"}

    decode = staticmethod(environment_from)

    async def create(self, *, id: str, org: str, name: str, dataplane_id: str, order: int) -> Environment:
        return await self.insert_row(
            "environments", id=id, org=org, name=name, dataplane_id=dataplane_id, position=order
        )

    async def of_org(self, org: str) -> list[Environment]:
        return await self.many("SELECT * FROM environments WHERE org = $1 ORDER BY position", org)
