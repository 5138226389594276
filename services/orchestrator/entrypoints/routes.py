"""The orchestrator's HTTP route table (contract: /work/shared/API.md, document: /openapi.json).

This table is the one place that says which path runs which handler, who may call it
(`need`: the least role of an org API key, `platform` for the admin token only, `none`
for enrollment, which the one-time token in its body authenticates) and what a change is
called in the audit trail (`action`). The roles follow API.md: every GET is `viewer`;
projects, components, deployments, promotions, executions and per-environment config are
`developer`; data planes, environments and API keys are `owner`; creating an org is
`platform`. The handlers live by area in `tenancy`, `components`, `configs` and `access`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from libs.contracts.messages import DeploymentView
from libs.runtime.access import Need
from libs.runtime.http import Api, Handler
from services.orchestrator.entrypoints import access as a
from services.orchestrator.entrypoints import components as c
from services.orchestrator.entrypoints import configs as cfg
from services.orchestrator.entrypoints import tenancy as t
from services.orchestrator.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    AuditList,
    ComponentCreate,
    ComponentList,
    ComponentOut,
    ComponentPatch,
    ConfigIn,
    ConfigOut,
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
)

ORG = "/v1/orgs/{org}"
PROJECTS = ORG + "/projects"
COMPONENT = PROJECTS + "/{project}/components/{component}"

Responses = dict[int, type[BaseModel] | None]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    need: Need
    summary: str
    request: type[BaseModel] | None = None
    responses: Responses | None = None
    action: str | None = None  # what a change is called in the audit trail (GETs are not recorded)


ROUTES: list[Route] = [
    Route(
        "POST", "/v1/orgs", t.create_org, "platform", "create an org", OrgCreate, {201: OrgOut}, "org.create"
    ),
    Route("GET", ORG, t.get_org, "viewer", "an org", None, {200: OrgOut}),
    Route(
        "POST",
        ORG + "/dataplanes",
        t.create_dataplane,
        "owner",
        "register a data plane; its enrollment token is shown once",
        DataPlaneCreate,
        {201: DataPlaneCreated},
        "dataplane.create",
    ),
    Route(
        "GET",
        ORG + "/dataplanes",
        t.list_dataplanes,
        "viewer",
        "data planes and their agents",
        None,
        {200: DataPlaneList},
    ),
    Route(
        "GET", ORG + "/dataplanes/{id}", t.get_dataplane, "viewer", "a data plane", None, {200: DataPlaneOut}
    ),
    Route(
        "DELETE",
        ORG + "/dataplanes/{id}",
        t.delete_dataplane,
        "owner",
        "delete a data plane no environment uses (409 dataplane_in_use); its agent's NATS user is revoked",
        None,
        {204: None},
        "dataplane.delete",
    ),
    Route(
        "POST",
        ORG + "/dataplanes/{id}/enrollment-token",
        t.new_enrollment_token,
        "owner",
        "issue a new one-time enrollment token (to re-enroll an agent)",
        None,
        {201: DataPlaneCreated},
        "dataplane.enrollment_token",
    ),
    Route(
        "POST",
        "/v1/dataplanes/enroll",
        t.enroll,
        "none",
        "an agent enrolls with its one-time token and registers its public key",
        EnrollRequest,
        {200: EnrollReply},
        "dataplane.enroll",
    ),
    Route(
        "POST",
        ORG + "/environments",
        t.create_environment,
        "owner",
        "add an environment to the pipeline",
        EnvironmentCreate,
        {201: EnvironmentOut},
        "environment.create",
    ),
    Route(
        "GET",
        ORG + "/environments",
        t.list_environments,
        "viewer",
        "environments in pipeline order",
        None,
        {200: EnvironmentList},
    ),
    Route(
        "POST",
        PROJECTS,
        t.create_project,
        "developer",
        "create a project",
        ProjectCreate,
        {201: ProjectOut},
        "project.create",
    ),
    Route("GET", PROJECTS, t.list_projects, "viewer", "projects", None, {200: ProjectList}),
    Route("GET", PROJECTS + "/{project}", t.get_project, "viewer", "a project", None, {200: ProjectOut}),
    Route(
        "POST",
        PROJECTS + "/{project}/components",
        c.create_component,
        "developer",
        "create a component",
        ComponentCreate,
        {201: ComponentOut},
        "component.create",
    ),
    Route(
        "GET",
        PROJECTS + "/{project}/components",
        c.list_components,
        "viewer",
        "components",
        None,
        {200: ComponentList},
    ),
    Route(
        "GET",
        COMPONENT,
        c.get_component,
        "viewer",
        "a component, with the image running in each environment",
        None,
        {200: ComponentOut},
    ),
    Route(
        "PATCH",
        COMPONENT,
        c.patch_component,
        "developer",
        "change a component",
        ComponentPatch,
        {200: ComponentOut},
        "component.update",
    ),
    Route(
        "DELETE",
        COMPONENT,
        c.delete_component,
        "developer",
        "delete a component and its history",
        None,
        {204: None},
        "component.delete",
    ),
    Route(
        "POST",
        COMPONENT + "/deployments",
        c.create_deployment,
        "developer",
        "deploy an image (default: the component's) to an environment (default: the first); "
        "an earlier image redeploys it (rollback)",
        DeploymentRequest,
        {202: DeploymentView},
        "deployment.create",
    ),
    Route(
        "GET",
        COMPONENT + "/deployments",
        c.list_deployments,
        "viewer",
        "deployment history, newest first",
        None,
        {200: DeploymentList},
    ),
    Route(
        "POST",
        COMPONENT + "/promotions",
        c.create_promotion,
        "developer",
        "deploy the image running in one environment to the next one",
        PromotionRequest,
        {202: DeploymentView},
        "promotion.create",
    ),
    Route(
        "GET",
        COMPONENT + "/environments/{environment}/config",
        cfg.get_config,
        "viewer",
        "the component's config in one environment (version 0: never configured); secrets by name only",
        None,
        {200: ConfigOut},
    ),
    Route(
        "PUT",
        COMPONENT + "/environments/{environment}/config",
        cfg.put_config,
        "developer",
        "replace the config of one environment (secrets: a string sets, null deletes, absent keeps); "
        "rolls out at once where something runs (deployment_id)",
        ConfigIn,
        {200: ConfigOut},
        "config.update",
    ),
    Route(
        "POST",
        COMPONENT + "/executions",
        c.create_execution,
        "developer",
        "run a manual task once",
        ExecutionRequest,
        {202: ExecutionOut},
        "execution.create",
    ),
    Route(
        "GET",
        COMPONENT + "/executions",
        c.list_executions,
        "viewer",
        "executions, newest first",
        None,
        {200: ExecutionList},
    ),
    Route(
        "GET",
        "/v1/deployments/{id}",
        c.get_deployment,
        "viewer",
        "a deployment (an org API key sees only its org's)",
        None,
        {200: DeploymentView},
    ),
    Route(
        "POST",
        ORG + "/api-keys",
        a.create_api_key,
        "owner",
        "create an org API key with a role; the key is shown only in this answer",
        ApiKeyCreate,
        {201: ApiKeyCreated},
        "apikey.create",
    ),
    Route(
        "GET",
        ORG + "/api-keys",
        a.list_api_keys,
        "viewer",
        "the org's API keys (never the key itself)",
        None,
        {200: ApiKeyList},
    ),
    Route(
        "DELETE",
        ORG + "/api-keys/{id}",
        a.revoke_api_key,
        "owner",
        "revoke an API key: it stops working at once on every service and replica",
        None,
        {204: None},
        "apikey.revoke",
    ),
    Route(
        "GET",
        ORG + "/audit",
        a.org_audit,
        "viewer",
        "the org's audit trail from every service, newest first (?action, ?actor_id, ?limit, ?cursor)",
        None,
        {200: AuditList},
    ),
]

HISTORY_QUERY: dict[str, dict[str, Any]] = {
    "environment": {"type": "string", "description": "only this environment"},
    "limit": {"type": "integer", "minimum": 1, "maximum": c.MAX_LIMIT, "default": c.DEFAULT_LIMIT},
}
QUERIES: dict[Handler, dict[str, dict[str, Any]]] = {
    c.list_deployments: HISTORY_QUERY,
    c.list_executions: HISTORY_QUERY,
    a.org_audit: a.AUDIT_QUERY,
}


def register(api: Api) -> None:
    for r in ROUTES:
        api.route(
            r.method,
            r.path,
            r.handler,
            summary=r.summary,
            auth=r.need,
            action=r.action,
            request=r.request,
            responses=r.responses,
            query=QUERIES.get(r.handler),
        )
