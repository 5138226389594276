"""PostgreSQL adapter: the only module that speaks SQL (and imports asyncpg).

What is subtle:

* Recording a deployment and superseding the older in-flight ones of the same
  (component, environment) happen in one transaction under an advisory lock on
  that pair, and `seq` is drawn inside the lock: two concurrent deployments can
  never both stay in flight, and the higher seq is always the newer one.
* `INSERT ... ON CONFLICT (id) DO NOTHING` makes a redelivered intake event a no-op.
* Every status write is conditional on the status read in the same transaction
  (`FOR UPDATE`), so a late report, a sweeper and an intake racing each other
  cannot move a deployment backwards.
* Connection failures become `DatabaseUnavailable` (503 for HTTP, redelivery for
  the consumers).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import asyncpg

from libs.contracts.ids import new_id
from libs.contracts.naming import namespace_for
from libs.runtime.db import unavailable_on_connection_errors
from services.orchestrator.domain import (
    Component,
    DataPlane,
    Deployment,
    Environment,
    Execution,
    NewDeployment,
    Org,
    Project,
    Teardown,
    deployment_may_move_from,
    execution_may_move,
)


class Duplicate(Exception):
    """A unique constraint refused the row; `field` is the client's name for what collided."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


_DUPLICATE_FIELDS = {
    "orgs_pkey": "name",
    "dataplanes_org_name_key": "name",
    "environments_org_name_key": "name",
    "environments_org_position_key": "order",
    "projects_org_name_key": "name",
    "components_org_project_name_key": "name",
}


def _org(r: asyncpg.Record) -> Org:
    return Org(name=r["name"], created_at=r["created_at"])


def _dataplane(r: asyncpg.Record) -> DataPlane:
    return DataPlane(
        id=r["id"],
        org=r["org"],
        name=r["name"],
        ingress_class=r["ingress_class"],
        public_key=r["public_key"],
        enrolled_at=r["enrolled_at"],
        agent_version=r["agent_version"],
        last_seen=r["last_seen"],
        created_at=r["created_at"],
        enrollment_expires_at=r["enrollment_expires_at"],
    )


def _environment(r: asyncpg.Record) -> Environment:
    return Environment(
        id=r["id"],
        org=r["org"],
        name=r["name"],
        dataplane_id=r["dataplane_id"],
        order=r["position"],
        created_at=r["created_at"],
    )


def _project(r: asyncpg.Record) -> Project:
    return Project(id=r["id"], org=r["org"], name=r["name"], created_at=r["created_at"])


def _component(r: asyncpg.Record) -> Component:
    return Component(
        id=r["id"],
        org=r["org"],
        project=r["project"],
        name=r["name"],
        type=r["type"],
        registry_id=r["registry_id"],
        registry_host=r["registry_host"],
        repository=r["repository"],
        image=r["image"],
        port=r["port"],
        schedule=r["schedule"],
        timezone=r["timezone"],
        env=json.loads(r["env"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _deployment(r: asyncpg.Record) -> Deployment:
    return Deployment(
        id=r["id"],
        component_id=r["component_id"],
        org=r["org"],
        project=r["project"],
        component=r["component"],
        environment=r["environment"],
        dataplane_id=r["dataplane_id"],
        seq=r["seq"],
        image=r["image"],
        digest=r["digest"],
        status=r["status"],
        reason=r["reason"],
        message=r["message"],
        source=r["source"],
        notes=json.loads(r["notes"]),
        attempts=r["attempts"],
        accepted_at=r["accepted_at"],
        recorded_at=r["recorded_at"],
        dispatched_at=r["dispatched_at"],
        applied_at=r["applied_at"],
        reported_at=r["reported_at"],
        finished_at=r["finished_at"],
        updated_at=r["updated_at"],
    )


def _teardown(r: asyncpg.Record) -> Teardown:
    return Teardown(
        id=r["id"],
        dataplane_id=r["dataplane_id"],
        org=r["org"],
        project=r["project"],
        component=r["component"],
        environment=r["environment"],
        namespace=r["namespace"],
        seq=r["seq"],
    )


def _execution(r: asyncpg.Record) -> Execution:
    return Execution(
        id=r["id"],
        deployment_id=r["deployment_id"],
        component_id=r["component_id"],
        environment=r["environment"],
        args=json.loads(r["args"]),
        status=r["status"],
        reason=r["reason"],
        message=r["message"],
        attempts=r["attempts"],
        created_at=r["created_at"],
        dispatched_at=r["dispatched_at"],
        finished_at=r["finished_at"],
        updated_at=r["updated_at"],
    )


class Repository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with unavailable_on_connection_errors(), self.pool.acquire() as conn:
            try:
                yield conn
            except asyncpg.exceptions.UniqueViolationError as exc:
                raise Duplicate(_DUPLICATE_FIELDS.get(exc.constraint_name or "", "name")) from exc

    # --- orgs -----------------------------------------------------------------------------

    async def create_org(self, name: str) -> Org:
        async with self._conn() as c:
            return _org(await c.fetchrow("INSERT INTO orgs (name) VALUES ($1) RETURNING *", name))

    async def get_org(self, name: str) -> Org | None:
        async with self._conn() as c:
            row = await c.fetchrow("SELECT * FROM orgs WHERE name = $1", name)
        return _org(row) if row else None

    async def list_orgs(self) -> list[Org]:
        async with self._conn() as c:
            return [_org(r) for r in await c.fetch("SELECT * FROM orgs ORDER BY name")]

    # --- data planes ----------------------------------------------------------------------

    async def create_dataplane(
        self,
        *,
        id: str,
        org: str,
        name: str,
        ingress_class: str | None,
        token_sha256: str,
        token_ttl_seconds: float,
    ) -> DataPlane:
        async with self._conn() as c:
            row = await c.fetchrow(
                "INSERT INTO dataplanes (id, org, name, ingress_class, enrollment_token_sha256,"
                " enrollment_expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))"
                " RETURNING *",
                id,
                org,
                name,
                ingress_class,
                token_sha256,
                token_ttl_seconds,
            )
        return _dataplane(row)

    async def list_dataplanes(self, org: str) -> list[DataPlane]:
        async with self._conn() as c:
            rows = await c.fetch("SELECT * FROM dataplanes WHERE org = $1 ORDER BY name", org)
        return [_dataplane(r) for r in rows]

    async def get_dataplane(self, dataplane_id: str, *, org: str | None = None) -> DataPlane | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                "SELECT * FROM dataplanes WHERE id = $1 AND ($2::text IS NULL OR org = $2)", dataplane_id, org
            )
        return _dataplane(row) if row else None

    async def set_enrollment_token(
        self, *, org: str, dataplane_id: str, token_sha256: str, token_ttl_seconds: float
    ) -> DataPlane | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                "UPDATE dataplanes SET enrollment_token_sha256 = $3,"
                " enrollment_expires_at = now() + make_interval(secs => $4)"
                " WHERE org = $1 AND id = $2 RETURNING *",
                org,
                dataplane_id,
                token_sha256,
                token_ttl_seconds,
            )
        return _dataplane(row) if row else None

    async def dataplane_by_enrollment_token(self, token_sha256: str) -> DataPlane | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                "SELECT * FROM dataplanes WHERE enrollment_token_sha256 = $1", token_sha256
            )
        return _dataplane(row) if row else None

    async def enroll(self, *, token_sha256: str, public_key: str, version: str) -> DataPlane | None:
        """Consume a one-time token (atomically: a second use finds nothing) and store the key.
        An expired token finds nothing either."""
        async with self._conn() as c, c.transaction():
            row = await c.fetchrow(
                "UPDATE dataplanes SET enrollment_token_sha256 = NULL, enrollment_expires_at = NULL,"
                " public_key = $2, enrolled_at = now(), agent_version = $3"
                " WHERE enrollment_token_sha256 = $1"
                " AND (enrollment_expires_at IS NULL OR enrollment_expires_at > now()) RETURNING *",
                token_sha256,
                public_key,
                version,
            )
            if row is None:
                return None
            # Work that waited for this data plane's key is due now.
            await c.execute(
                "UPDATE deployments SET next_attempt_at = now()"
                " WHERE dataplane_id = $1 AND status = 'pending'",
                row["id"],
            )
        return _dataplane(row)

    async def record_heartbeat(self, *, dataplane_id: str, version: str) -> None:
        async with self._conn() as c:
            await c.execute(
                "UPDATE dataplanes SET last_seen = now(), agent_version = $2 WHERE id = $1",
                dataplane_id,
                version,
            )

    # --- environments -----------------------------------------------------------------------

    async def create_environment(
        self, *, id: str, org: str, name: str, dataplane_id: str, order: int
    ) -> Environment:
        async with self._conn() as c:
            row = await c.fetchrow(
                "INSERT INTO environments (id, org, name, dataplane_id, position)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING *",
                id,
                org,
                name,
                dataplane_id,
                order,
            )
        return _environment(row)

    async def list_environments(self, org: str) -> list[Environment]:
        async with self._conn() as c:
            rows = await c.fetch("SELECT * FROM environments WHERE org = $1 ORDER BY position", org)
        return [_environment(r) for r in rows]

    # --- projects ---------------------------------------------------------------------------

    async def create_project(self, *, id: str, org: str, name: str) -> Project:
        async with self._conn() as c:
            row = await c.fetchrow(
                "INSERT INTO projects (id, org, name) VALUES ($1, $2, $3) RETURNING *", id, org, name
            )
        return _project(row)

    async def get_project(self, org: str, name: str) -> Project | None:
        async with self._conn() as c:
            row = await c.fetchrow("SELECT * FROM projects WHERE org = $1 AND name = $2", org, name)
        return _project(row) if row else None

    async def list_projects(self, org: str) -> list[Project]:
        async with self._conn() as c:
            rows = await c.fetch("SELECT * FROM projects WHERE org = $1 ORDER BY name", org)
        return [_project(r) for r in rows]

    # --- components -------------------------------------------------------------------------

    async def create_component(self, component: Component) -> Component:
        async with self._conn() as c:
            row = await c.fetchrow(
                "INSERT INTO components (id, org, project, name, type, registry_id, registry_host,"
                " repository, image, port, schedule, timezone, env)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb) RETURNING *",
                component.id,
                component.org,
                component.project,
                component.name,
                component.type,
                component.registry_id,
                component.registry_host,
                component.repository,
                component.image,
                component.port,
                component.schedule,
                component.timezone,
                json.dumps(component.env),
            )
        return _component(row)

    async def update_component(self, component: Component) -> Component | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                "UPDATE components SET registry_id = $2, registry_host = $3, repository = $4, image = $5,"
                " port = $6, schedule = $7, timezone = $8, env = $9::jsonb, updated_at = now()"
                " WHERE id = $1 RETURNING *",
                component.id,
                component.registry_id,
                component.registry_host,
                component.repository,
                component.image,
                component.port,
                component.schedule,
                component.timezone,
                json.dumps(component.env),
            )
        return _component(row) if row else None

    async def get_component(self, org: str, project: str, name: str) -> Component | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                "SELECT * FROM components WHERE org = $1 AND project = $2 AND name = $3", org, project, name
            )
        return _component(row) if row else None

    async def component_and_environments(
        self, org: str, project: str, name: str
    ) -> tuple[Component, list[Environment]] | None:
        """A component with its org's environments in pipeline order, in one round trip (intake)."""
        async with self._conn() as c:
            row = await c.fetchrow(
                "SELECT c, ARRAY(SELECT e FROM environments e WHERE e.org = c.org ORDER BY e.position)"
                " AS envs FROM components c WHERE c.org = $1 AND c.project = $2 AND c.name = $3",
                org,
                project,
                name,
            )
        if row is None:
            return None
        return _component(row["c"]), [_environment(e) for e in row["envs"]]

    async def list_components(self, org: str, project: str) -> list[Component]:
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT * FROM components WHERE org = $1 AND project = $2 ORDER BY name", org, project
            )
        return [_component(r) for r in rows]

    async def delete_component(self, org: str, project: str, name: str) -> list[Teardown] | None:
        """Delete the component with its history, and record a teardown for every environment whose
        data plane got a deployment of it; None when there is no such component.

        The row lock makes a concurrent deployment either commit first (and get its teardown) or
        fail on the missing component: none slips in between."""
        async with self._conn() as c, c.transaction():
            component_id = await c.fetchval(
                "SELECT id FROM components WHERE org = $1 AND project = $2 AND name = $3 FOR UPDATE",
                org,
                project,
                name,
            )
            if component_id is None:
                return None
            targets = await c.fetch(
                "SELECT DISTINCT environment, dataplane_id FROM deployments"
                " WHERE component_id = $1 AND dataplane_id IS NOT NULL ORDER BY environment",
                component_id,
            )
            rows = [
                await c.fetchrow(
                    "INSERT INTO teardowns (id, dataplane_id, org, project, component, environment,"
                    " namespace) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                    new_id("td"),
                    t["dataplane_id"],
                    org,
                    project,
                    name,
                    t["environment"],
                    namespace_for(org, project, t["environment"]),
                )
                for t in targets
            ]
            await c.execute("DELETE FROM components WHERE id = $1", component_id)
        return [_teardown(r) for r in rows]

    async def claim_due_teardowns(self, limit: int, *, lease_seconds: float) -> list[Teardown]:
        async with self._conn() as c:
            rows = await c.fetch(
                "UPDATE teardowns SET next_attempt_at = now() + make_interval(secs => $2)"
                " WHERE id IN (SELECT id FROM teardowns WHERE next_attempt_at <= now()"
                " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *",
                limit,
                lease_seconds,
            )
        return [_teardown(r) for r in rows]

    async def teardown_sent(self, teardown_id: str) -> None:
        async with self._conn() as c:
            await c.execute("DELETE FROM teardowns WHERE id = $1", teardown_id)

    async def components_using_registry(self, org: str, registry_id: str) -> list[str]:
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT project, name FROM components WHERE org = $1 AND registry_id = $2"
                " ORDER BY project, name",
                org,
                registry_id,
            )
        return [f"{r['project']}/{r['name']}" for r in rows]

    async def running(self, component_ids: Sequence[str]) -> dict[str, dict[str, Deployment]]:
        """Per component, per environment: the newest succeeded deployment (what runs there)."""
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT DISTINCT ON (component_id, environment) * FROM deployments"
                " WHERE component_id = ANY($1::text[]) AND status = 'succeeded'"
                " ORDER BY component_id, environment, seq DESC",
                list(component_ids),
            )
        out: dict[str, dict[str, Deployment]] = {}
        for r in rows:
            out.setdefault(r["component_id"], {})[r["environment"]] = _deployment(r)
        return out

    # --- deployments ------------------------------------------------------------------------

    async def insert_deployment(self, new: NewDeployment) -> tuple[Deployment, list[Deployment]] | None:
        """Record `new` and supersede the older in-flight deployments of the same component and
        environment. Returns None (and changes nothing) when the id exists already, or when the
        component was deleted meanwhile."""
        try:
            return await self._insert_deployment(new)
        except asyncpg.ForeignKeyViolationError:
            return None

    async def _insert_deployment(self, new: NewDeployment) -> tuple[Deployment, list[Deployment]] | None:
        # One round trip: see migrations/0005_record_deployment.sql for what it does and why.
        environment = new.environment.name if new.environment else ""
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT * FROM record_deployment($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
                " $14::jsonb, $15, $16, $17)",
                new.id,
                new.component.id,
                new.component.org,
                new.component.project,
                new.component.name,
                environment,
                new.environment.dataplane_id if new.environment else None,
                new.image,
                new.digest,
                new.status,
                new.reason,
                new.message,
                new.source,
                json.dumps(new.notes),
                new.token_prefix,
                new.idempotency_key,
                new.accepted_at,
            )
        recorded = [r for r in rows if r["id"] == new.id]
        if not recorded:
            return None
        return _deployment(recorded[0]), [_deployment(r) for r in rows if r["id"] != new.id]

    async def get_deployment(self, deployment_id: str) -> Deployment | None:
        async with self._conn() as c:
            row = await c.fetchrow("SELECT * FROM deployments WHERE id = $1", deployment_id)
        return _deployment(row) if row else None

    async def list_deployments(
        self, component_id: str, *, environment: str | None, limit: int
    ) -> list[Deployment]:
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT * FROM deployments WHERE component_id = $1 AND ($2::text IS NULL OR environment = $2)"
                " ORDER BY seq DESC LIMIT $3",
                component_id,
                environment,
                limit,
            )
        return [_deployment(r) for r in rows]

    async def last_succeeded(self, component_id: str, environment: str) -> Deployment | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                "SELECT * FROM deployments WHERE component_id = $1 AND environment = $2"
                " AND status = 'succeeded' ORDER BY seq DESC LIMIT 1",
                component_id,
                environment,
            )
        return _deployment(row) if row else None

    async def succeeded_before(
        self, component_id: str, environment: str, *, image: str, digest: str | None
    ) -> bool:
        """Whether this image (by digest when known) ever ran successfully in the environment."""
        async with self._conn() as c:
            found = await c.fetchval(
                "SELECT 1 FROM deployments WHERE component_id = $1 AND environment = $2"
                " AND status = 'succeeded'"
                " AND (image = $3 OR ($4::text IS NOT NULL AND digest = $4)) LIMIT 1",
                component_id,
                environment,
                image,
                digest,
            )
        return found is not None

    async def claim_due_deployments(self, limit: int, *, lease_seconds: float) -> list[str]:
        """Pending deployments whose next attempt is due, leased for `lease_seconds` so that
        another replica's sweeper does not pick them too (a crashed attempt is retried after it)."""
        async with self._conn() as c:
            rows = await c.fetch(
                "UPDATE deployments SET next_attempt_at = now() + make_interval(secs => $2)"
                " WHERE id IN (SELECT id FROM deployments"
                " WHERE status = 'pending' AND next_attempt_at <= now()"
                " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id",
                limit,
                lease_seconds,
            )
        return [r["id"] for r in rows]

    async def dispatch_context(
        self, deployment_id: str
    ) -> tuple[Deployment, Component, DataPlane | None] | None:
        """A deployment with what dispatching it needs: its component and its data plane.

        One round trip: the three rows come back as composite values (asyncpg decodes a table's
        row type into a record with the table's column names)."""
        async with self._conn() as c:
            row = await c.fetchrow(
                "SELECT d, c, p FROM deployments d JOIN components c ON c.id = d.component_id"
                " LEFT JOIN dataplanes p ON p.id = d.dataplane_id WHERE d.id = $1",
                deployment_id,
            )
        if row is None:
            return None
        plane = row["p"]
        return _deployment(row["d"]), _component(row["c"]), _dataplane(plane) if plane is not None else None

    async def set_digest(self, deployment_id: str, digest: str) -> None:
        async with self._conn() as c:
            await c.execute(
                "UPDATE deployments SET digest = $2, updated_at = now() WHERE id = $1 AND status = 'pending'",
                deployment_id,
                digest,
            )

    async def defer(self, deployment_id: str, *, reason: str | None, delay_seconds: float) -> None:
        """Leave a deployment pending and try again after `delay_seconds`."""
        async with self._conn() as c:
            await c.execute(
                "UPDATE deployments SET attempts = attempts + 1, reason = COALESCE($2, reason),"
                " next_attempt_at = now() + make_interval(secs => $3), updated_at = now()"
                " WHERE id = $1 AND status = 'pending'",
                deployment_id,
                reason,
                delay_seconds,
            )

    async def fail_pending(
        self, deployment_id: str, *, reason: str, message: str | None
    ) -> Deployment | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                "UPDATE deployments SET status = 'failed', reason = $2, message = $3, finished_at = now(),"
                " updated_at = now() WHERE id = $1 AND status = 'pending' RETURNING *",
                deployment_id,
                reason,
                message,
            )
        return _deployment(row) if row else None

    async def mark_dispatched(
        self, deployment_id: str, *, digest: str | None, notes: list[str], dispatched_at: datetime
    ) -> Deployment | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                "UPDATE deployments SET status = 'dispatched', digest = COALESCE($2, digest),"
                " notes = $3::jsonb, reason = NULL, dispatched_at = $4, updated_at = now()"
                " WHERE id = $1 AND status = 'pending' RETURNING *",
                deployment_id,
                digest,
                json.dumps(notes),
                dispatched_at,
            )
        return _deployment(row) if row else None

    async def apply_report(
        self,
        deployment_id: str,
        *,
        dataplane_id: str,
        status: str,
        reason: str | None,
        message: str | None,
        applied_at: datetime | None,
        reported_at: datetime,
    ) -> Deployment | None:
        """Move a deployment to `status` if the state machine allows; None when nothing changed.

        One statement (the state machine's rule is in its WHERE): the row lock it takes makes
        concurrent moves of one deployment apply one after the other, each against the status the
        other left."""
        async with self._conn() as c:
            row = await c.fetchrow(
                "UPDATE deployments SET status = $2, reason = $3, message = $4,"
                " applied_at = COALESCE($5, applied_at), reported_at = $6,"
                " dispatched_at = COALESCE(dispatched_at, $6),"
                " finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'superseded') THEN now() END,"
                " updated_at = now() WHERE id = $1 AND dataplane_id = $7 AND status = ANY($8::text[])"
                " RETURNING *",
                deployment_id,
                status,
                reason,
                message,
                applied_at,
                reported_at,
                dataplane_id,
                deployment_may_move_from(status),
            )
        return _deployment(row) if row else None

    # --- executions -------------------------------------------------------------------------

    async def create_execution(self, *, id: str, deployment: Deployment, args: list[str]) -> Execution:
        async with self._conn() as c:
            row = await c.fetchrow(
                "INSERT INTO executions (id, deployment_id, component_id, environment, args, status)"
                " VALUES ($1, $2, $3, $4, $5::jsonb, 'pending') RETURNING *",
                id,
                deployment.id,
                deployment.component_id,
                deployment.environment,
                json.dumps(args),
            )
        return _execution(row)

    async def get_execution(self, execution_id: str) -> Execution | None:
        async with self._conn() as c:
            row = await c.fetchrow("SELECT * FROM executions WHERE id = $1", execution_id)
        return _execution(row) if row else None

    async def list_executions(
        self, component_id: str, *, environment: str | None, limit: int
    ) -> list[Execution]:
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT * FROM executions WHERE component_id = $1 AND ($2::text IS NULL OR environment = $2)"
                " ORDER BY created_at DESC, id DESC LIMIT $3",
                component_id,
                environment,
                limit,
            )
        return [_execution(r) for r in rows]

    async def claim_due_executions(self, limit: int, *, lease_seconds: float) -> list[str]:
        async with self._conn() as c:
            rows = await c.fetch(
                "UPDATE executions SET next_attempt_at = now() + make_interval(secs => $2)"
                " WHERE id IN (SELECT id FROM executions"
                " WHERE status = 'pending' AND next_attempt_at <= now()"
                " ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id",
                limit,
                lease_seconds,
            )
        return [r["id"] for r in rows]

    async def execution_context(
        self, execution_id: str
    ) -> tuple[Execution, Deployment, Component, DataPlane | None] | None:
        """An execution with the deployment whose image it runs, its component and data plane."""
        async with self._conn() as c:
            e = await c.fetchrow("SELECT * FROM executions WHERE id = $1", execution_id)
            if e is None:
                return None
            d = await c.fetchrow("SELECT * FROM deployments WHERE id = $1", e["deployment_id"])
            component = await c.fetchrow("SELECT * FROM components WHERE id = $1", e["component_id"])
            plane = await c.fetchrow(
                "SELECT * FROM dataplanes WHERE id = $1", d["dataplane_id"] if d else None
            )
        if d is None or component is None:
            return None
        return _execution(e), _deployment(d), _component(component), _dataplane(plane) if plane else None

    async def defer_execution(self, execution_id: str, *, reason: str | None, delay_seconds: float) -> None:
        async with self._conn() as c:
            await c.execute(
                "UPDATE executions SET attempts = attempts + 1, reason = COALESCE($2, reason),"
                " next_attempt_at = now() + make_interval(secs => $3), updated_at = now()"
                " WHERE id = $1 AND status = 'pending'",
                execution_id,
                reason,
                delay_seconds,
            )

    async def move_execution(
        self,
        execution_id: str,
        *,
        status: str,
        reason: str | None,
        message: str | None,
        dataplane_id: str | None = None,
        deployment_id: str | None = None,
    ) -> Execution | None:
        """Move an execution forward (only); optionally only if it belongs to that data plane/deployment."""
        async with self._conn() as c, c.transaction():
            current = await c.fetchrow(
                "SELECT e.status, e.deployment_id, d.dataplane_id FROM executions e"
                " JOIN deployments d ON d.id = e.deployment_id WHERE e.id = $1 FOR UPDATE OF e",
                execution_id,
            )
            if current is None or not execution_may_move(current["status"], status):
                return None
            if dataplane_id is not None and current["dataplane_id"] != dataplane_id:
                return None
            if deployment_id is not None and current["deployment_id"] != deployment_id:
                return None
            row = await c.fetchrow(
                "UPDATE executions SET status = $2, reason = $3, message = $4, updated_at = now(),"
                " dispatched_at = CASE WHEN $2 = 'dispatched' THEN now()"
                " ELSE COALESCE(dispatched_at, now()) END,"
                " finished_at = CASE WHEN $2 IN ('succeeded', 'failed') THEN now() END"
                " WHERE id = $1 RETURNING *",
                execution_id,
                status,
                reason,
                message,
            )
        return _execution(row)
