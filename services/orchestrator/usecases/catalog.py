"""Orgs, environments, projects and components: what can be deployed where.

Every lookup is scoped by org, so another tenant's object is simply "not found".
What is subtle:

* A component's image must live on its registry's host; the registry is owned by
  the credentials service, asked over NATS (no answer = 503, never a guess).
* Gateways cache components; every create, change and delete is announced on
  `components.changed` so they drop their copy.
* Deleting a component deletes its history and, in the same transaction,
  records a teardown for every environment whose data plane got a deployment of
  it; the component's row lock makes a concurrent deployment either commit
  first (and get its teardown) or fail on the missing component.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from libs.contracts.ids import looks_like, new_id
from libs.contracts.naming import namespace_for
from libs.oci.reference import ImageReference, canonical_host
from libs.runtime.errors import Conflict, Invalid, NotFound
from libs.runtime.store import Duplicate
from services.orchestrator.clients.credentials import Credentials
from services.orchestrator.clients.gateways import Gateways
from services.orchestrator.domain.records import Component, DataPlane, Deployment, Environment, Org, Project
from services.orchestrator.domain.rules import ComponentSettings, check_component_spec, check_image_host
from services.orchestrator.store import Store
from services.orchestrator.usecases.teardowns import Teardowns

log = logging.getLogger(__name__)

# JSON null in a PATCH: these go back to unset (`env` to empty); a component always has the others.
_REQUIRED = ("registry_id", "image")


@dataclass(kw_only=True, eq=False)
class Catalog:
    store: Store
    credentials: Credentials
    gateways: Gateways
    teardowns: Teardowns

    # --- orgs -------------------------------------------------------------------------------

    async def create_org(self, name: str) -> Org:
        try:
            return await self.store.now.orgs.create(name)
        except Duplicate:
            raise Conflict(f"an org named {name!r} exists already") from None

    async def org(self, name: str) -> Org:
        org = await self.store.now.orgs.get(name)
        if org is None:
            raise NotFound(f"org {name!r}")
        return org

    async def dataplane_in(self, org: str, dataplane_id: str) -> DataPlane | None:
        """The org's data plane with that id (None for another org's, or for what is not an id)."""
        if not looks_like("dp", dataplane_id):
            return None
        return await self.store.now.dataplanes.get(dataplane_id, org=org)

    # --- environments -----------------------------------------------------------------------

    async def create_environment(self, org: str, *, name: str, dataplane_id: str, order: int) -> Environment:
        await self.org(org)
        if await self.dataplane_in(org, dataplane_id) is None:
            raise Invalid("dataplane_id", "no such data plane in this org")
        try:
            return await self.store.now.environments.create(
                id=new_id("env"), org=org, name=name, dataplane_id=dataplane_id, order=order
            )
        except Duplicate as exc:
            if exc.field == "order":
                raise Conflict(f"another environment has order {order} already") from None
            raise Conflict(f"an environment named {name!r} exists already") from None

    async def environments(self, org: str) -> list[Environment]:
        await self.org(org)
        return await self.store.now.environments.of_org(org)

    # --- projects ---------------------------------------------------------------------------

    async def create_project(self, org: str, name: str) -> Project:
        await self.org(org)
        try:
            return await self.store.now.projects.create(id=new_id("prj"), org=org, name=name)
        except Duplicate:
            raise Conflict(f"a project named {name!r} exists already") from None

    async def project(self, org: str, name: str) -> Project:
        project = await self.store.now.projects.get(org, name)
        if project is None:
            raise NotFound(f"project {name!r}")
        return project

    async def projects(self, org: str) -> list[Project]:
        await self.org(org)
        return await self.store.now.projects.of_org(org)

    # --- components -------------------------------------------------------------------------

    async def _registry_host(self, org: str, registry_id: str, image: ImageReference) -> str:
        """The registry's canonical host, once it is known to be the org's and the image's host."""
        registry = (
            await self.credentials.registry(org=org, registry_id=registry_id)
            if looks_like("reg", registry_id)
            else None
        )
        if registry is None:
            raise Invalid("registry_id", "no such registry in this org")
        check_image_host(image, registry.host)
        return canonical_host(registry.host)

    async def create_component(
        self,
        org: str,
        project: str,
        *,
        name: str,
        type: str,
        registry_id: str,
        image: str,
        port: int | None,
        schedule: str | None,
        timezone: str | None,
        env: dict[str, str],
    ) -> Component:
        await self.project(org, project)
        spec = check_component_spec(
            type=type, image=image, port=port, schedule=schedule, timezone=timezone, env=env
        )
        duplicate = f"a component named {name!r} exists already in this project"
        if await self.store.now.components.get(org, project, name) is not None:
            raise Conflict(duplicate)
        registry_host = await self._registry_host(org, registry_id, spec.image)
        settings = ComponentSettings(registry_id, registry_host, spec)
        try:
            created = await self.store.now.components.create(
                id=new_id("cmp"), org=org, project=project, name=name, settings=settings
            )
        except Duplicate:
            raise Conflict(duplicate) from None
        log.info("component created", extra={"org": org, "project": project, "component": name})
        await self.gateways.component_changed(created)
        return created

    async def component(self, org: str, project: str, name: str) -> Component:
        component = await self.store.now.components.get(org, project, name)
        if component is None:
            raise NotFound(f"component {project}/{name}")
        return component

    async def components(self, org: str, project: str) -> list[Component]:
        await self.project(org, project)
        return await self.store.now.components.in_project(org, project)

    async def running(self, components: Sequence[Component]) -> dict[str, dict[str, Deployment]]:
        """Per component id, per environment: its last succeeded deployment (what runs there)."""
        return await self.store.now.deployments.running([c.id for c in components])

    async def update_component(
        self, org: str, project: str, name: str, changes: dict[str, object]
    ) -> Component:
        """Apply the given fields (a PATCH); the result is validated as a whole, like a create."""
        current = await self.component(org, project, name)
        for required in _REQUIRED:
            if required in changes and changes[required] is None:
                raise Invalid(required, "cannot be removed; give a new value or leave it out")
        if "env" in changes and changes["env"] is None:
            changes = {**changes, "env": {}}
        merged = {
            "registry_id": current.registry_id,
            "image": current.image,
            "port": current.port,
            "schedule": current.schedule,
            "timezone": current.timezone,
            "env": current.env,
            **changes,
        }
        spec = check_component_spec(
            type=current.type,
            image=str(merged["image"]),
            port=merged["port"],  # type: ignore[arg-type]
            schedule=merged["schedule"],  # type: ignore[arg-type]
            timezone=merged["timezone"],  # type: ignore[arg-type]
            env=merged["env"],  # type: ignore[arg-type]
        )
        registry_id = str(merged["registry_id"])
        registry_host = current.registry_host
        if registry_id != current.registry_id or str(spec.image) != current.image:
            registry_host = await self._registry_host(org, registry_id, spec.image)
        updated = await self.store.now.components.update(
            current.id, ComponentSettings(registry_id, registry_host, spec)
        )
        if updated is None:
            raise NotFound(f"component {project}/{name}")
        log.info("component updated", extra={"org": org, "project": project, "component": name})
        await self.gateways.component_changed(updated)
        return updated

    async def delete_component(self, org: str, project: str, name: str) -> None:
        """Delete the component and its history, and tell its data planes to remove what it runs."""
        component = await self.component(org, project, name)
        async with self.store.transaction() as tx:
            component_id = await tx.components.lock(org, project, name)
            if component_id is None:
                raise NotFound(f"component {project}/{name}")
            teardowns = [
                await tx.teardowns.add(
                    id=new_id("td"),
                    component=component,
                    environment=environment,
                    dataplane_id=dataplane_id,
                    namespace=namespace_for(org, project, environment),
                )
                for environment, dataplane_id in await tx.deployments.targets(component_id)
            ]
            await tx.components.delete(component_id)
        log.info(
            "component deleted",
            extra={"org": org, "project": project, "component": name, "teardowns": len(teardowns)},
        )
        await self.gateways.component_changed(component)
        await self.teardowns.send_soon(teardowns)

    async def registry_usage(self, org: str, registry_id: str) -> list[str]:
        return await self.store.now.components.using_registry(org, registry_id)
