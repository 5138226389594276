"""HTTP handlers for orgs, data planes (and their agents' enrollment), environments and projects."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from libs.contracts.messages import utcnow
from libs.runtime.access import PREAUTH, Caller, audit_target, set_caller
from libs.runtime.errors import ProblemError
from libs.runtime.http import json_response, made, path_name, read_json
from services.orchestrator.domain.records import DataPlane, Environment, Org, Project
from services.orchestrator.domain.rules import EnrollmentRefused
from services.orchestrator.entrypoints import HEARTBEAT_FRESH, USECASES
from services.orchestrator.schemas import (
    AgentStatus,
    DataPlaneCreate,
    DataPlaneCreated,
    DataPlaneList,
    DataPlaneOut,
    EnrollReply,
    EnrollRequest,
    EnvironmentCreate,
    EnvironmentList,
    EnvironmentOut,
    OrgCreate,
    OrgOut,
    ProjectCreate,
    ProjectList,
    ProjectOut,
)

# --- encoding ---------------------------------------------------------------------------------


def org_out(org: Org) -> OrgOut:
    return OrgOut(name=org.name, created_at=org.created_at)


def dataplane_out(plane: DataPlane, fresh: timedelta) -> DataPlaneOut:
    return DataPlaneOut(
        id=plane.id,
        name=plane.name,
        ingress_class=plane.ingress_class,
        enrolled=plane.public_key is not None,
        enrolled_at=plane.enrolled_at,
        created_at=plane.created_at,
        agent=AgentStatus(
            connected=plane.connected(utcnow(), fresh), last_seen=plane.last_seen, version=plane.agent_version
        ),
    )


def dataplane_created(plane: DataPlane, token: str) -> DataPlaneCreated:
    return DataPlaneCreated(
        id=plane.id,
        name=plane.name,
        ingress_class=plane.ingress_class,
        enrollment_token=token,
        enrollment_expires_at=plane.enrollment_expires_at,
        created_at=plane.created_at,
    )


def environment_out(env: Environment) -> EnvironmentOut:
    return EnvironmentOut(
        name=env.name, dataplane_id=env.dataplane_id, order=env.order, created_at=env.created_at
    )


def project_out(project: Project) -> ProjectOut:
    return ProjectOut(name=project.name, created_at=project.created_at)


# --- handlers ---------------------------------------------------------------------------------


async def create_org(request: web.Request) -> web.Response:
    body = await read_json(request, OrgCreate)
    org = await request.app[USECASES].catalog.create_org(body.name)
    audit_target(request, f"/v1/orgs/{org.name}", org=org.name)
    return json_response(org_out(org), 201)


async def get_org(request: web.Request) -> web.Response:
    return json_response(org_out(await request.app[USECASES].catalog.org(path_name(request, "org"))))


async def create_dataplane(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    body = await read_json(request, DataPlaneCreate)
    plane, token = await request.app[USECASES].dataplanes.create(
        org, name=body.name, ingress_class=body.ingress_class
    )
    return made(request, plane.id, dataplane_created(plane, token))


async def list_dataplanes(request: web.Request) -> web.Response:
    planes = await request.app[USECASES].dataplanes.of_org(path_name(request, "org"))
    fresh = request.app[HEARTBEAT_FRESH]
    return json_response(DataPlaneList(items=[dataplane_out(p, fresh) for p in planes]))


async def get_dataplane(request: web.Request) -> web.Response:
    plane = await request.app[USECASES].dataplanes.get(path_name(request, "org"), request.match_info["id"])
    return json_response(dataplane_out(plane, request.app[HEARTBEAT_FRESH]))


async def delete_dataplane(request: web.Request) -> web.Response:
    """204; 409 `dataplane_in_use` while an environment uses it. Its agent's NATS user is revoked."""
    plane = await request.app[USECASES].dataplanes.delete(path_name(request, "org"), request.match_info["id"])
    audit_target(request, plane.id)
    return web.Response(status=204)


async def new_enrollment_token(request: web.Request) -> web.Response:
    plane, token = await request.app[USECASES].dataplanes.new_enrollment_token(
        path_name(request, "org"), request.match_info["id"]
    )
    return json_response(dataplane_created(plane, token), 201)


async def enroll(request: web.Request) -> web.Response:
    """Authenticated by the one-time token in the body, not by a bearer token: the audit trail
    records the enrollment in the plane's org with the agent (the data plane's id) as the actor.

    Open to anyone, so it counts refused tokens per client address like every bearer route does
    (`PREAUTH`): guessing enrollment tokens is answered 429 before any look-up."""
    limiter = request.app[PREAUTH]
    limiter.check(request)
    body = await read_json(request, EnrollRequest)
    try:
        plane, grant = await request.app[USECASES].dataplanes.enroll(
            token=body.enrollment_token,
            public_key=body.public_key,
            version=body.version,
            nats_user_public_key=body.nats_user_public_key,
        )
    except EnrollmentRefused as exc:
        limiter.refused(request)
        raise ProblemError(401, "Unauthorized", exc.detail, kind="unauthorized") from None
    set_caller(request, Caller(kind="agent", org=plane.org, id=plane.id, name=plane.name))
    audit_target(request, plane.id, org=plane.org)
    reply = EnrollReply(
        dataplane_id=plane.id,
        org=plane.org,
        name=plane.name,
        nats_jwt=grant.jwt if grant else None,
        nats_inbox_prefix=grant.inbox_prefix if grant else None,
        command_keys=request.app[USECASES].dataplanes.command_keys,
    )
    return json_response(reply.model_dump(mode="json", exclude_none=True))


async def create_environment(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    body = await read_json(request, EnvironmentCreate)
    env = await request.app[USECASES].catalog.create_environment(
        org, name=body.name, dataplane_id=body.dataplane_id, order=body.order
    )
    return made(request, f"{request.path}/{env.name}", environment_out(env))


async def list_environments(request: web.Request) -> web.Response:
    envs = await request.app[USECASES].catalog.environments(path_name(request, "org"))
    return json_response(EnvironmentList(items=[environment_out(e) for e in envs]))


async def create_project(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    body = await read_json(request, ProjectCreate)
    project = await request.app[USECASES].catalog.create_project(org, body.name)
    return made(request, f"{request.path}/{project.name}", project_out(project))


async def list_projects(request: web.Request) -> web.Response:
    projects = await request.app[USECASES].catalog.projects(path_name(request, "org"))
    return json_response(ProjectList(items=[project_out(p) for p in projects]))


async def get_project(request: web.Request) -> web.Response:
    catalog = request.app[USECASES].catalog
    return json_response(
        project_out(await catalog.project(path_name(request, "org"), path_name(request, "project")))
    )
