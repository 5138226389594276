"""Projects and the components in them (what can be deployed, from which registry and repository).

What is subtle: `lock` takes the component's row lock for a deletion, so a
concurrent deployment either commits first (and gets its teardown) or fails on
the missing component (`record_deployment`'s foreign key): none slips in between.
"""

from __future__ import annotations

import json
from typing import Any

from services.orchestrator.domain.records import Component, Environment, Project
from services.orchestrator.domain.rules import ComponentSettings
from services.orchestrator.store.base import RecordRepo, row_decoder
from services.orchestrator.store.environments import environment_from

project_from = row_decoder(Project)


component_from = row_decoder(Component, json_columns={"env"})


def _settings(settings: ComponentSettings) -> tuple[Any, ...]:
    """What a change may touch, in the column order both INSERT and UPDATE use ($6.. and $2..)."""
    spec = settings.spec
    return (
        settings.registry_id,
        settings.registry_host,
        spec.image.repository,
        str(spec.image),
        spec.port,
        spec.schedule,
        spec.timezone,
        json.dumps(spec.env),
    )


class Projects(RecordRepo[Project]):
    constraint_fields = {"projects_org_name_key": "name"}

    decode = staticmethod(project_from)

    async def create(self, *, id: str, org: str, name: str) -> Project:
        return await self.insert_row("projects", id=id, org=org, name=name)

    async def get(self, org: str, name: str) -> Project | None:
        return await self.one("SELECT * FROM projects WHERE org = $1 AND name = $2", org, name)

    async def of_org(self, org: str) -> list[Project]:
        return await self.many("SELECT * FROM projects WHERE org = $1 ORDER BY name", org)


class Components(RecordRepo[Component]):
    constraint_fields = {"components_org_project_name_key": "name"}

    decode = staticmethod(component_from)

    async def create(
        self, *, id: str, org: str, project: str, name: str, settings: ComponentSettings
    ) -> Component:
        created = await self.one(
            "INSERT INTO components (id, org, project, name, type, registry_id, registry_host,"
            " repository, image, port, schedule, timezone, env)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb) RETURNING *",
            id,
            org,
            project,
            name,
            settings.spec.type,
            *_settings(settings),
        )
        assert created is not None
        return created

    async def update(self, component_id: str, settings: ComponentSettings) -> Component | None:
        """Its registry and what its spec decides (its type stays); None when it was deleted."""
        return await self.one(
            "UPDATE components SET registry_id = $2, registry_host = $3, repository = $4, image = $5,"
            " port = $6, schedule = $7, timezone = $8, env = $9::jsonb, updated_at = now()"
            " WHERE id = $1 RETURNING *",
            component_id,
            *_settings(settings),
        )

    async def get(self, org: str, project: str, name: str) -> Component | None:
        return await self.one(
            "SELECT * FROM components WHERE org = $1 AND project = $2 AND name = $3", org, project, name
        )

    async def with_environments(
        self, org: str, project: str, name: str
    ) -> tuple[Component, list[Environment]] | None:
        """A component with its org's environments in pipeline order, in one round trip (intake)."""
        row = await self.row(
            "SELECT c, ARRAY(SELECT e FROM environments e WHERE e.org = c.org ORDER BY e.position)"
            " AS envs FROM components c WHERE c.org = $1 AND c.project = $2 AND c.name = $3",
            org,
            project,
            name,
        )
        if row is None:
            return None
        return component_from(row["c"]), [environment_from(e) for e in row["envs"]]

    async def in_project(self, org: str, project: str) -> list[Component]:
        return await self.many(
            "SELECT * FROM components WHERE org = $1 AND project = $2 ORDER BY name", org, project
        )

    async def using_registry(self, org: str, registry_id: str) -> list[str]:
        """`project/name` of the org's components on that registry."""
        rows = await self.rows(
            "SELECT project, name FROM components WHERE org = $1 AND registry_id = $2 ORDER BY project, name",
            org,
            registry_id,
        )
        return [f"{r['project']}/{r['name']}" for r in rows]

    async def lock(self, org: str, project: str, name: str) -> str | None:
        """The component's id, its row locked until the transaction ends (deletion)."""
        component_id: str | None = await self.value(
            "SELECT id FROM components WHERE org = $1 AND project = $2 AND name = $3 FOR UPDATE",
            org,
            project,
            name,
        )
        return component_id

    async def delete(self, component_id: str) -> None:
        """Delete it with its history (deployments and executions cascade)."""
        await self.execute("DELETE FROM components WHERE id = $1", component_id)
