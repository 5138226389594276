"""HTTP handlers: decode the body, call the catalog or the deployer, encode the answer.

Every route except enrollment needs the admin token (checked by `Api.route`);
enrollment is authenticated by the one-time token in its body.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from aiohttp import web

from libs.contracts.ids import looks_like
from libs.contracts.messages import DeploymentView, utcnow
from libs.runtime.errors import DependencyUnavailable, invalid, not_found
from libs.runtime.http import NAME_RE, Api, json_response, path_name, read_json
from services.orchestrator.catalog import Catalog
from services.orchestrator.deployments import Deployer
from services.orchestrator.domain import Component, DataPlane, Deployment, Execution
from services.orchestrator.schemas import (
    AgentStatus,
    ComponentCreate,
    ComponentList,
    ComponentOut,
    ComponentPatch,
    DataPlaneCreate,
    DataPlaneCreated,
    DataPlaneList,
    DataPlaneOut,
    DeploymentList,
    DeploymentRequest,
    EnrollReply,
    EnrollRequest,
    EnvironmentCreate,
    EnvironmentList,
    EnvironmentOut,
    ExecutionList,
    ExecutionOut,
    ExecutionRequest,
    OrgCreate,
    OrgOut,
    ProjectCreate,
    ProjectList,
    ProjectOut,
    PromotionRequest,
    RunningImage,
)

log = logging.getLogger(__name__)

CATALOG = web.AppKey("catalog", Catalog)
DEPLOYER = web.AppKey("deployer", Deployer)
HEARTBEAT_FRESH = web.AppKey("heartbeat_fresh", timedelta)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


# --- encoding ---------------------------------------------------------------------------------


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


def component_out(component: Component, running: dict[str, Deployment]) -> ComponentOut:
    return ComponentOut(
        org=component.org,
        project=component.project,
        name=component.name,
        type=component.type,
        registry_id=component.registry_id,
        image=component.image,
        port=component.port,
        schedule=component.schedule,
        timezone=component.timezone,
        env=component.env,
        created_at=component.created_at,
        updated_at=component.updated_at,
        environments={
            env: RunningImage(image=d.image, digest=d.digest, deployment_id=d.id, status=d.status)
            for env, d in running.items()
        },
    )


def execution_out(execution: Execution) -> ExecutionOut:
    return ExecutionOut(
        id=execution.id,
        status=execution.status,
        args=execution.args,
        environment=execution.environment,
        deployment_id=execution.deployment_id,
        reason=execution.reason,
        created_at=execution.created_at,
        updated_at=execution.updated_at,
    )


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _environment_filter(request: web.Request) -> str | None:
    value = request.query.get("environment")
    if value is not None and (len(value) > 40 or not NAME_RE.match(value)):
        raise invalid("environment", "not an environment name")
    return value


async def _component(request: web.Request) -> Component:
    return await request.app[CATALOG].component(
        path_name(request, "org"), path_name(request, "project"), path_name(request, "component")
    )


# --- orgs, data planes, environments, projects ------------------------------------------------


async def create_org(request: web.Request) -> web.Response:
    body = await read_json(request, OrgCreate)
    org = await request.app[CATALOG].create_org(body.name)
    return json_response(OrgOut(name=org.name, created_at=org.created_at), 201)


async def get_org(request: web.Request) -> web.Response:
    org = await request.app[CATALOG].org(path_name(request, "org"))
    return json_response(OrgOut(name=org.name, created_at=org.created_at))


async def create_dataplane(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    body = await read_json(request, DataPlaneCreate)
    plane, token = await request.app[CATALOG].create_dataplane(
        org, name=body.name, ingress_class=body.ingress_class
    )
    return json_response(
        DataPlaneCreated(
            id=plane.id,
            name=plane.name,
            ingress_class=plane.ingress_class,
            enrollment_token=token,
            enrollment_expires_at=plane.enrollment_expires_at,
            created_at=plane.created_at,
        ),
        201,
    )


async def list_dataplanes(request: web.Request) -> web.Response:
    planes = await request.app[CATALOG].dataplanes(path_name(request, "org"))
    fresh = request.app[HEARTBEAT_FRESH]
    return json_response(DataPlaneList(items=[dataplane_out(p, fresh) for p in planes]))


async def get_dataplane(request: web.Request) -> web.Response:
    plane = await request.app[CATALOG].dataplane(path_name(request, "org"), request.match_info["id"])
    return json_response(dataplane_out(plane, request.app[HEARTBEAT_FRESH]))


async def new_enrollment_token(request: web.Request) -> web.Response:
    plane, token = await request.app[CATALOG].new_enrollment_token(
        path_name(request, "org"), request.match_info["id"]
    )
    return json_response(
        DataPlaneCreated(
            id=plane.id,
            name=plane.name,
            ingress_class=plane.ingress_class,
            enrollment_token=token,
            enrollment_expires_at=plane.enrollment_expires_at,
            created_at=plane.created_at,
        ),
        201,
    )


async def enroll(request: web.Request) -> web.Response:
    body = await read_json(request, EnrollRequest)
    plane, grant = await request.app[CATALOG].enroll(
        token=body.enrollment_token,
        public_key=body.public_key,
        version=body.version,
        nats_user_public_key=body.nats_user_public_key,
    )
    reply = EnrollReply(
        dataplane_id=plane.id,
        org=plane.org,
        name=plane.name,
        nats_jwt=grant.jwt if grant else None,
        nats_inbox_prefix=grant.inbox_prefix if grant else None,
    )
    return json_response(reply.model_dump(mode="json", exclude_none=True))


async def create_environment(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    body = await read_json(request, EnvironmentCreate)
    env = await request.app[CATALOG].create_environment(
        org, name=body.name, dataplane_id=body.dataplane_id, order=body.order
    )
    return json_response(
        EnvironmentOut(
            name=env.name, dataplane_id=env.dataplane_id, order=env.order, created_at=env.created_at
        ),
        201,
    )


async def list_environments(request: web.Request) -> web.Response:
    envs = await request.app[CATALOG].environments(path_name(request, "org"))
    return json_response(
        EnvironmentList(
            items=[
                EnvironmentOut(
                    name=e.name, dataplane_id=e.dataplane_id, order=e.order, created_at=e.created_at
                )
                for e in envs
            ]
        )
    )


async def create_project(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    body = await read_json(request, ProjectCreate)
    project = await request.app[CATALOG].create_project(org, body.name)
    return json_response(ProjectOut(name=project.name, created_at=project.created_at), 201)


async def list_projects(request: web.Request) -> web.Response:
    projects = await request.app[CATALOG].projects(path_name(request, "org"))
    return json_response(
        ProjectList(items=[ProjectOut(name=p.name, created_at=p.created_at) for p in projects])
    )


async def get_project(request: web.Request) -> web.Response:
    project = await request.app[CATALOG].project(path_name(request, "org"), path_name(request, "project"))
    return json_response(ProjectOut(name=project.name, created_at=project.created_at))


# --- components -------------------------------------------------------------------------------


async def create_component(request: web.Request) -> web.Response:
    org, project = path_name(request, "org"), path_name(request, "project")
    body = await read_json(request, ComponentCreate)
    component = await request.app[CATALOG].create_component(
        org,
        project,
        name=body.name,
        type=body.type,
        registry_id=body.registry_id,
        image=body.image,
        port=body.port,
        schedule=body.schedule,
        timezone=body.timezone,
        env=body.env,
    )
    return json_response(component_out(component, {}), 201)


async def list_components(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    components = await catalog.components(path_name(request, "org"), path_name(request, "project"))
    running = await catalog.repo.running([c.id for c in components])
    return json_response(ComponentList(items=[component_out(c, running.get(c.id, {})) for c in components]))


async def get_component(request: web.Request) -> web.Response:
    component = await _component(request)
    running = await request.app[CATALOG].repo.running([component.id])
    return json_response(component_out(component, running.get(component.id, {})))


async def patch_component(request: web.Request) -> web.Response:
    org, project, name = (
        path_name(request, "org"),
        path_name(request, "project"),
        path_name(request, "component"),
    )
    body = await read_json(request, ComponentPatch)
    catalog = request.app[CATALOG]
    component = await catalog.update_component(org, project, name, body.model_dump(exclude_unset=True))
    running = await catalog.repo.running([component.id])
    return json_response(component_out(component, running.get(component.id, {})))


async def delete_component(request: web.Request) -> web.Response:
    teardowns = await request.app[CATALOG].delete_component(
        path_name(request, "org"), path_name(request, "project"), path_name(request, "component")
    )
    try:  # stored with the deletion: what is not sent now, the sweeper sends
        await request.app[DEPLOYER].send_teardowns(teardowns)
    except DependencyUnavailable as exc:
        log.warning("removals deferred", extra={"count": len(teardowns), "error": str(exc)})
    return web.Response(status=204)


# --- deployments, promotions, executions ------------------------------------------------------


async def create_deployment(request: web.Request) -> web.Response:
    component = await _component(request)
    body = await read_json(request, DeploymentRequest)
    deployment = await request.app[DEPLOYER].deploy_manual(
        component, environment=body.environment, image=body.image, tag=body.tag
    )
    return json_response(deployment.view(), 202)


async def list_deployments(request: web.Request) -> web.Response:
    component = await _component(request)
    deployments = await request.app[DEPLOYER].repo.list_deployments(
        component.id, environment=_environment_filter(request), limit=_limit(request)
    )
    return json_response(DeploymentList(items=[d.view() for d in deployments]))


async def create_promotion(request: web.Request) -> web.Response:
    component = await _component(request)
    body = await read_json(request, PromotionRequest)
    deployment = await request.app[DEPLOYER].promote(component, from_env=body.from_, to_env=body.to)
    return json_response(deployment.view(), 202)


async def create_execution(request: web.Request) -> web.Response:
    component = await _component(request)
    body = await read_json(request, ExecutionRequest)
    execution = await request.app[DEPLOYER].start_execution(
        component, environment=body.environment, args=body.args
    )
    return json_response(execution_out(execution), 202)


async def list_executions(request: web.Request) -> web.Response:
    component = await _component(request)
    executions = await request.app[DEPLOYER].repo.list_executions(
        component.id, environment=_environment_filter(request), limit=_limit(request)
    )
    return json_response(ExecutionList(items=[execution_out(e) for e in executions]))


async def get_deployment(request: web.Request) -> web.Response:
    deployment_id = request.match_info["id"]
    deployment = (
        await request.app[DEPLOYER].repo.get_deployment(deployment_id)
        if looks_like("dep", deployment_id)
        else None
    )
    if deployment is None:
        raise not_found(f"deployment {deployment_id[:40]!r}")
    return json_response(deployment.view())


def register(api: Api) -> None:
    org = "/v1/orgs/{org}"
    component = org + "/projects/{project}/components/{component}"
    history_query: dict[str, dict[str, Any]] = {
        "environment": {"type": "string", "description": "only this environment"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    }
    r = api.route
    r("POST", "/v1/orgs", create_org, summary="create an org", request=OrgCreate, responses={201: OrgOut})
    r("GET", org, get_org, summary="an org", responses={200: OrgOut})
    r(
        "POST",
        org + "/dataplanes",
        create_dataplane,
        summary="register a data plane; its enrollment token is shown once",
        request=DataPlaneCreate,
        responses={201: DataPlaneCreated},
    )
    r(
        "GET",
        org + "/dataplanes",
        list_dataplanes,
        summary="data planes and their agents",
        responses={200: DataPlaneList},
    )
    r("GET", org + "/dataplanes/{id}", get_dataplane, summary="a data plane", responses={200: DataPlaneOut})
    r(
        "POST",
        org + "/dataplanes/{id}/enrollment-token",
        new_enrollment_token,
        summary="issue a new one-time enrollment token (to re-enroll an agent)",
        responses={201: DataPlaneCreated},
    )
    r(
        "POST",
        "/v1/dataplanes/enroll",
        enroll,
        summary="an agent enrolls with its one-time token and registers its public key",
        auth="none",
        request=EnrollRequest,
        responses={200: EnrollReply},
    )
    r(
        "POST",
        org + "/environments",
        create_environment,
        summary="add an environment to the pipeline",
        request=EnvironmentCreate,
        responses={201: EnvironmentOut},
    )
    r(
        "GET",
        org + "/environments",
        list_environments,
        summary="environments in pipeline order",
        responses={200: EnvironmentList},
    )
    r(
        "POST",
        org + "/projects",
        create_project,
        summary="create a project",
        request=ProjectCreate,
        responses={201: ProjectOut},
    )
    r("GET", org + "/projects", list_projects, summary="projects", responses={200: ProjectList})
    r("GET", org + "/projects/{project}", get_project, summary="a project", responses={200: ProjectOut})
    r(
        "POST",
        org + "/projects/{project}/components",
        create_component,
        summary="create a component",
        request=ComponentCreate,
        responses={201: ComponentOut},
    )
    r(
        "GET",
        org + "/projects/{project}/components",
        list_components,
        summary="components",
        responses={200: ComponentList},
    )
    r(
        "GET",
        component,
        get_component,
        summary="a component, with the image running in each environment",
        responses={200: ComponentOut},
    )
    r(
        "PATCH",
        component,
        patch_component,
        summary="change a component",
        request=ComponentPatch,
        responses={200: ComponentOut},
    )
    r(
        "DELETE",
        component,
        delete_component,
        summary="delete a component and its history",
        responses={204: None},
    )
    r(
        "POST",
        component + "/deployments",
        create_deployment,
        summary="deploy an image (default: the component's) to an environment (default: the first); "
        "an earlier image redeploys it (rollback)",
        request=DeploymentRequest,
        responses={202: DeploymentView},
    )
    r(
        "GET",
        component + "/deployments",
        list_deployments,
        summary="deployment history, newest first",
        responses={200: DeploymentList},
        query=history_query,
    )
    r(
        "POST",
        component + "/promotions",
        create_promotion,
        summary="deploy the image running in one environment to the next one",
        request=PromotionRequest,
        responses={202: DeploymentView},
    )
    r(
        "POST",
        component + "/executions",
        create_execution,
        summary="run a manual task once",
        request=ExecutionRequest,
        responses={202: ExecutionOut},
    )
    r(
        "GET",
        component + "/executions",
        list_executions,
        summary="executions, newest first",
        responses={200: ExecutionList},
        query=history_query,
    )
    r("GET", "/v1/deployments/{id}", get_deployment, summary="a deployment", responses={200: DeploymentView})
