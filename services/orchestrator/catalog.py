"""Orgs, data planes, environments, projects and components: what can be deployed where.

Every lookup is scoped by org, so another tenant's object is simply "not found".
What is subtle:

* A data plane's enrollment token is shown once and only its sha256 is kept; using
  it consumes it in the same UPDATE that stores the agent's public key, so two
  agents racing with one token cannot both enroll. Re-enrolling needs a new token.
* Enrollment first makes sure the agent's durable consumer exists (an agent with
  its own NATS user may only bind to it), and only then consumes the token: if
  NATS is down the answer is 503 and the same token works on the retry. An agent
  that sent an nkeys user key gets a NATS user JWT limited to its data plane.
* A component's image must live on its registry's host; the registry is owned by
  the credentials service, asked over NATS (no answer = 503, never a guess).
* Gateways cache components; every create, change and delete is announced on
  `components.changed` so they drop their copy.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from libs.contracts.ids import looks_like, new_id
from libs.contracts.messages import ComponentChanged, RegistryInfo, utcnow
from libs.oci.reference import canonical_host
from libs.runtime.bus import Bus
from libs.runtime.errors import ProblemError, conflict, invalid, not_found
from libs.runtime.natsauth import is_user_public_key
from services.orchestrator.credentials import Credentials
from services.orchestrator.domain import (
    Component,
    DataPlane,
    Environment,
    Org,
    Project,
    Teardown,
    check_component_spec,
    check_image_host,
    check_public_key,
    new_enrollment_token,
    token_sha256,
)
from services.orchestrator.natsaccess import AgentNatsIssuer, NatsGrant
from services.orchestrator.repository import Duplicate, Repository

log = logging.getLogger(__name__)


class Catalog:
    def __init__(
        self,
        *,
        repo: Repository,
        bus: Bus,
        credentials: Credentials,
        nats: AgentNatsIssuer | None = None,
        enrollment_token_ttl_seconds: float = 86400.0,
    ) -> None:
        self.enrollment_token_ttl_seconds = enrollment_token_ttl_seconds
        self.repo = repo
        self.bus = bus
        self.credentials = credentials
        self.nats = nats

    # --- orgs -------------------------------------------------------------------------------

    async def create_org(self, name: str) -> Org:
        try:
            return await self.repo.create_org(name)
        except Duplicate:
            raise conflict(f"an org named {name!r} exists already") from None

    async def org(self, name: str) -> Org:
        org = await self.repo.get_org(name)
        if org is None:
            raise not_found(f"org {name!r}")
        return org

    # --- data planes ------------------------------------------------------------------------

    async def create_dataplane(
        self, org: str, *, name: str, ingress_class: str | None
    ) -> tuple[DataPlane, str]:
        """A new data plane and its one-time enrollment token (returned once, stored hashed)."""
        await self.org(org)
        token = new_enrollment_token()
        try:
            plane = await self.repo.create_dataplane(
                id=new_id("dp"),
                org=org,
                name=name,
                ingress_class=ingress_class,
                token_sha256=token_sha256(token),
                token_ttl_seconds=self.enrollment_token_ttl_seconds,
            )
        except Duplicate:
            raise conflict(f"a data plane named {name!r} exists already in this org") from None
        log.info("data plane created", extra={"dataplane_id": plane.id, "org": org})
        return plane, token

    async def dataplanes(self, org: str) -> list[DataPlane]:
        await self.org(org)
        return await self.repo.list_dataplanes(org)

    async def dataplane(self, org: str, dataplane_id: str) -> DataPlane:
        await self.org(org)
        plane = (
            await self.repo.get_dataplane(dataplane_id, org=org) if looks_like("dp", dataplane_id) else None
        )
        if plane is None:
            raise not_found(f"data plane {dataplane_id[:40]!r}")
        return plane

    async def new_enrollment_token(self, org: str, dataplane_id: str) -> tuple[DataPlane, str]:
        await self.dataplane(org, dataplane_id)
        token = new_enrollment_token()
        plane = await self.repo.set_enrollment_token(
            org=org,
            dataplane_id=dataplane_id,
            token_sha256=token_sha256(token),
            token_ttl_seconds=self.enrollment_token_ttl_seconds,
        )
        if plane is None:
            raise not_found(f"data plane {dataplane_id!r}")
        log.info("enrollment token issued", extra={"dataplane_id": dataplane_id})
        return plane, token

    async def enroll(
        self, *, token: str, public_key: str, version: str, nats_user_public_key: str | None = None
    ) -> tuple[DataPlane, NatsGrant | None]:
        key = check_public_key(public_key)
        if nats_user_public_key is not None and not is_user_public_key(nats_user_public_key):
            raise invalid("nats_user_public_key", "not an nkeys user public key (U...)")
        sha = token_sha256(token)
        pending = await self.repo.dataplane_by_enrollment_token(sha)
        if pending is not None:
            await self.bus.ensure_agent_consumer(pending.id)
        plane = await self.repo.enroll(token_sha256=sha, public_key=key, version=version)
        if pending is not None and plane is None and pending.enrollment_expires_at is not None:
            raise ProblemError(
                401,
                "Unauthorized",
                f"the enrollment token expired at {pending.enrollment_expires_at.isoformat()}; ask an admin"
                f" for a new one (POST /v1/orgs/{pending.org}/dataplanes/{pending.id}/enrollment-token)",
                kind="unauthorized",
            )
        if pending is None or plane is None:
            raise ProblemError(
                401,
                "Unauthorized",
                "the enrollment token is unknown or was used already; ask an admin for a new one",
                kind="unauthorized",
            )
        grant = None
        if self.nats is not None and nats_user_public_key is not None:
            grant = self.nats.issue(plane.id, nats_user_public_key)
        elif self.nats is not None:
            log.warning("agent enrolled without a NATS user key", extra={"dataplane_id": plane.id})
        log.info(
            "data plane enrolled",
            extra={"dataplane_id": plane.id, "version": version, "nats_user": grant is not None},
        )
        return plane, grant

    async def heartbeat(self, *, dataplane_id: str, version: str) -> None:
        await self.repo.record_heartbeat(dataplane_id=dataplane_id, version=version)

    # --- environments -----------------------------------------------------------------------

    async def create_environment(self, org: str, *, name: str, dataplane_id: str, order: int) -> Environment:
        await self.org(org)
        plane = (
            await self.repo.get_dataplane(dataplane_id, org=org) if looks_like("dp", dataplane_id) else None
        )
        if plane is None:
            raise invalid("dataplane_id", "no such data plane in this org")
        try:
            return await self.repo.create_environment(
                id=new_id("env"), org=org, name=name, dataplane_id=dataplane_id, order=order
            )
        except Duplicate as exc:
            if exc.field == "order":
                raise conflict(f"another environment has order {order} already") from None
            raise conflict(f"an environment named {name!r} exists already") from None

    async def environments(self, org: str) -> list[Environment]:
        await self.org(org)
        return await self.repo.list_environments(org)

    # --- projects ---------------------------------------------------------------------------

    async def create_project(self, org: str, name: str) -> Project:
        await self.org(org)
        try:
            return await self.repo.create_project(id=new_id("prj"), org=org, name=name)
        except Duplicate:
            raise conflict(f"a project named {name!r} exists already") from None

    async def project(self, org: str, name: str) -> Project:
        project = await self.repo.get_project(org, name)
        if project is None:
            raise not_found(f"project {name!r}")
        return project

    async def projects(self, org: str) -> list[Project]:
        await self.org(org)
        return await self.repo.list_projects(org)

    # --- components -------------------------------------------------------------------------

    async def _registry(self, org: str, registry_id: str) -> RegistryInfo:
        registry = (
            await self.credentials.registry(org=org, registry_id=registry_id)
            if looks_like("reg", registry_id)
            else None
        )
        if registry is None:
            raise invalid("registry_id", "no such registry in this org")
        return registry

    async def _announce(self, component: Component) -> None:
        await self.bus.publish(
            self.bus.subjects.components_changed,
            ComponentChanged(org=component.org, project=component.project, component=component.name),
        )

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
        if await self.repo.get_component(org, project, name) is not None:
            raise conflict(f"a component named {name!r} exists already in this project")
        registry = await self._registry(org, registry_id)
        check_image_host(spec.image, registry.host)
        now = utcnow()
        component = Component(
            id=new_id("cmp"),
            org=org,
            project=project,
            name=name,
            type=spec.type,
            registry_id=registry_id,
            registry_host=canonical_host(registry.host),
            repository=spec.image.repository,
            image=str(spec.image),
            port=spec.port,
            schedule=spec.schedule,
            timezone=spec.timezone,
            env=spec.env,
            created_at=now,
            updated_at=now,
        )
        try:
            created = await self.repo.create_component(component)
        except Duplicate:
            raise conflict(f"a component named {name!r} exists already in this project") from None
        log.info("component created", extra={"org": org, "project": project, "component": name})
        await self._announce(created)
        return created

    async def component(self, org: str, project: str, name: str) -> Component:
        component = await self.repo.get_component(org, project, name)
        if component is None:
            raise not_found(f"component {project}/{name}")
        return component

    async def components(self, org: str, project: str) -> list[Component]:
        await self.project(org, project)
        return await self.repo.list_components(org, project)

    async def update_component(
        self, org: str, project: str, name: str, changes: dict[str, object]
    ) -> Component:
        """Apply the given fields (a PATCH); the result is validated as a whole, like a create."""
        current = await self.component(org, project, name)
        # JSON null: `port`, `schedule` and `timezone` go back to unset, `env` to empty; a component
        # always has an image and a registry. (Found by `make chaos`: `"env": null` was a 500.)
        for required in ("registry_id", "image"):
            if required in changes and changes[required] is None:
                raise invalid(required, "cannot be removed; give a new value or leave it out")
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
            registry = await self._registry(org, registry_id)
            check_image_host(spec.image, registry.host)
            registry_host = canonical_host(registry.host)
        updated = await self.repo.update_component(
            replace(
                current,
                registry_id=registry_id,
                registry_host=registry_host,
                repository=spec.image.repository,
                image=str(spec.image),
                port=spec.port,
                schedule=spec.schedule,
                timezone=spec.timezone,
                env=spec.env,
                updated_at=datetime.now(UTC),
            )
        )
        if updated is None:
            raise not_found(f"component {project}/{name}")
        log.info("component updated", extra={"org": org, "project": project, "component": name})
        await self._announce(updated)
        return updated

    async def delete_component(self, org: str, project: str, name: str) -> list[Teardown]:
        """Delete the component and its history; returns the removals its data planes must make."""
        component = await self.component(org, project, name)
        teardowns = await self.repo.delete_component(org, project, name)
        if teardowns is None:
            raise not_found(f"component {project}/{name}")
        log.info(
            "component deleted",
            extra={"org": org, "project": project, "component": name, "teardowns": len(teardowns)},
        )
        await self._announce(component)
        return teardowns

    async def registry_usage(self, org: str, registry_id: str) -> list[str]:
        return await self.repo.components_using_registry(org, registry_id)
