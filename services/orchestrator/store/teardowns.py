"""Teardowns: a deleted component's objects in one environment, kept until its agent was told.

A teardown's seq comes from the deployments' sequence (migrations/0004), so it
is above every deployment of the component: the agent's tombstone refuses a
deploy command dispatched before the deletion that arrives after it.
"""

from __future__ import annotations

from services.orchestrator.domain.records import Component, Teardown
from services.orchestrator.store.base import RecordRepo, row_decoder

teardown_from = row_decoder(Teardown)


class Teardowns(RecordRepo[Teardown]):
    decode = staticmethod(teardown_from)

    async def add(
        self, *, id: str, component: Component, environment: str, dataplane_id: str, namespace: str
    ) -> Teardown:
        """The component's objects in `namespace` on that data plane, to be removed."""
        return await self.insert_row(
            "teardowns",
            id=id,
            dataplane_id=dataplane_id,
            org=component.org,
            project=component.project,
            component=component.name,
            environment=environment,
            namespace=namespace,
        )

    async def claim_due(self, limit: int, *, lease_seconds: float) -> list[Teardown]:
        return await self.many(
            "UPDATE teardowns SET next_attempt_at = now() + make_interval(secs => $2)"
            " WHERE id IN (SELECT id FROM teardowns WHERE next_attempt_at <= now()"
            " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *",
            limit,
            lease_seconds,
        )

    async def sent(self, teardown_id: str) -> None:
        await self.execute("DELETE FROM teardowns WHERE id = $1", teardown_id)
