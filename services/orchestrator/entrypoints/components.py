"""HTTP handlers for components and what happens to them: deployments, promotions, executions."""

from __future__ import annotations

from aiohttp import web

from libs.runtime.access import caller
from libs.runtime.errors import Invalid
from libs.runtime.http import NAME_RE, json_response, made, path_name, query_int, read_json
from services.orchestrator.domain.records import Component, Deployment, Execution, record_fields
from services.orchestrator.entrypoints import USECASES
from services.orchestrator.schemas import (
    ComponentCreate,
    ComponentList,
    ComponentOut,
    ComponentPatch,
    DeploymentList,
    DeploymentRequest,
    ExecutionList,
    ExecutionOut,
    ExecutionRequest,
    PromotionRequest,
    RunningImage,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

# --- encoding and decoding --------------------------------------------------------------------


def component_out(component: Component, running: dict[str, Deployment]) -> ComponentOut:
    """The fields of the component that `ComponentOut` shows, and the image running in each environment."""
    environments = {
        env: RunningImage(image=d.image, digest=d.digest, deployment_id=d.id, status=d.status)
        for env, d in running.items()
    }
    return ComponentOut.model_validate({**record_fields(component), "environments": environments})


def execution_out(execution: Execution) -> ExecutionOut:
    """The fields of the execution that `ExecutionOut` shows."""
    return ExecutionOut.model_validate(execution, from_attributes=True)


def query_limit(request: web.Request) -> int:
    """`?limit` of a list (histories, the audit trail)."""
    return query_int(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)


def _environment_filter(request: web.Request) -> str | None:
    value = request.query.get("environment")
    if value is not None and (len(value) > 40 or not NAME_RE.match(value)):
        raise Invalid("environment", "not an environment name")
    return value


def _path(request: web.Request) -> tuple[str, str, str]:
    return path_name(request, "org"), path_name(request, "project"), path_name(request, "component")


async def component_of(request: web.Request) -> Component:
    """The component the path names (another org's: 404)."""
    return await request.app[USECASES].catalog.component(*_path(request))


async def _with_running(request: web.Request, component: Component) -> web.Response:
    running = await request.app[USECASES].catalog.running([component])
    return json_response(component_out(component, running.get(component.id, {})))


# --- components -------------------------------------------------------------------------------


async def create_component(request: web.Request) -> web.Response:
    org, project = path_name(request, "org"), path_name(request, "project")
    body = await read_json(request, ComponentCreate)
    component = await request.app[USECASES].catalog.create_component(
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
    return made(request, f"{request.path}/{component.name}", component_out(component, {}))


async def list_components(request: web.Request) -> web.Response:
    catalog = request.app[USECASES].catalog
    components = await catalog.components(path_name(request, "org"), path_name(request, "project"))
    running = await catalog.running(components)
    return json_response(ComponentList(items=[component_out(c, running.get(c.id, {})) for c in components]))


async def get_component(request: web.Request) -> web.Response:
    return await _with_running(request, await component_of(request))


async def patch_component(request: web.Request) -> web.Response:
    org, project, name = _path(request)
    body = await read_json(request, ComponentPatch)
    catalog = request.app[USECASES].catalog
    component = await catalog.update_component(org, project, name, body.model_dump(exclude_unset=True))
    return await _with_running(request, component)


async def delete_component(request: web.Request) -> web.Response:
    """Its config secrets in Vault go too, once the component (and its config rows) are gone."""
    component = await component_of(request)
    await request.app[USECASES].catalog.delete_component(*_path(request))
    await request.app[USECASES].configs.forget(component)
    return web.Response(status=204)


# --- deployments, promotions, executions ------------------------------------------------------


async def create_deployment(request: web.Request) -> web.Response:
    component = await component_of(request)
    body = await read_json(request, DeploymentRequest)
    deployment = await request.app[USECASES].deployments.deploy(
        component, environment=body.environment, image=body.image, tag=body.tag
    )
    return made(request, deployment.id, deployment.view(), 202)


async def list_deployments(request: web.Request) -> web.Response:
    component = await component_of(request)
    deployments = await request.app[USECASES].deployments.history(
        component, environment=_environment_filter(request), limit=query_limit(request)
    )
    return json_response(DeploymentList(items=[d.view() for d in deployments]))


async def create_promotion(request: web.Request) -> web.Response:
    component = await component_of(request)
    body = await read_json(request, PromotionRequest)
    deployment = await request.app[USECASES].deployments.promote(
        component, from_env=body.from_, to_env=body.to
    )
    return made(request, deployment.id, deployment.view(), 202)


async def create_execution(request: web.Request) -> web.Response:
    component = await component_of(request)
    body = await read_json(request, ExecutionRequest)
    execution = await request.app[USECASES].executions.start(
        component, environment=body.environment, args=body.args
    )
    return made(request, execution.id, execution_out(execution), 202)


async def list_executions(request: web.Request) -> web.Response:
    component = await component_of(request)
    executions = await request.app[USECASES].executions.history(
        component, environment=_environment_filter(request), limit=query_limit(request)
    )
    return json_response(ExecutionList(items=[execution_out(e) for e in executions]))


async def get_deployment(request: web.Request) -> web.Response:
    """An org key sees only its org's deployments (another org's answers 404, as an unknown one)."""
    deployments = request.app[USECASES].deployments
    deployment = await deployments.get(request.match_info["id"], org=caller(request).scope)
    return json_response(deployment.view())
