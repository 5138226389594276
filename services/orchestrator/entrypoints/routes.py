"""The orchestrator's HTTP route table (contract: /work/shared/API.md, document: /openapi.json).

Every route needs the admin token except enrollment, which the one-time token
in its body authenticates. The handlers live by area in `tenancy` and
`components`; this table is the one place that says which path runs which.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from libs.contracts.messages import DeploymentView
from libs.runtime.http import Api, Handler
from services.orchestrator.entrypoints import components as c
from services.orchestrator.entrypoints import tenancy as t
from services.orchestrator.schemas import (
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
)

ORG = "/v1/orgs/{org}"
PROJECTS = ORG + "/projects"
COMPONENT = PROJECTS + "/{project}/components/{component}"

Responses = dict[int, type[BaseModel] | None]

# method, path, handler, summary, request body, responses
ROUTES: list[tuple[str, str, Handler, str, type[BaseModel] | None, Responses]] = [
    ("POST", "/v1/orgs", t.create_org, "create an org", OrgCreate, {201: OrgOut}),
    ("GET", ORG, t.get_org, "an org", None, {200: OrgOut}),
    (
        "POST",
        ORG + "/dataplanes",
        t.create_dataplane,
        "register a data plane; its enrollment token is shown once",
        DataPlaneCreate,
        {201: DataPlaneCreated},
    ),
    (
        "GET",
        ORG + "/dataplanes",
        t.list_dataplanes,
        "data planes and their agents",
        None,
        {200: DataPlaneList},
    ),
    ("GET", ORG + "/dataplanes/{id}", t.get_dataplane, "a data plane", None, {200: DataPlaneOut}),
    (
        "POST",
        ORG + "/dataplanes/{id}/enrollment-token",
        t.new_enrollment_token,
        "issue a new one-time enrollment token (to re-enroll an agent)",
        None,
        {201: DataPlaneCreated},
    ),
    (
        "POST",
        "/v1/dataplanes/enroll",
        t.enroll,
        "an agent enrolls with its one-time token and registers its public key",
        EnrollRequest,
        {200: EnrollReply},
    ),
    (
        "POST",
        ORG + "/environments",
        t.create_environment,
        "add an environment to the pipeline",
        EnvironmentCreate,
        {201: EnvironmentOut},
    ),
    (
        "GET",
        ORG + "/environments",
        t.list_environments,
        "environments in pipeline order",
        None,
        {200: EnvironmentList},
    ),
    ("POST", PROJECTS, t.create_project, "create a project", ProjectCreate, {201: ProjectOut}),
    ("GET", PROJECTS, t.list_projects, "projects", None, {200: ProjectList}),
    ("GET", PROJECTS + "/{project}", t.get_project, "a project", None, {200: ProjectOut}),
    (
        "POST",
        PROJECTS + "/{project}/components",
        c.create_component,
        "create a component",
        ComponentCreate,
        {201: ComponentOut},
    ),
    ("GET", PROJECTS + "/{project}/components", c.list_components, "components", None, {200: ComponentList}),
    (
        "GET",
        COMPONENT,
        c.get_component,
        "a component, with the image running in each environment",
        None,
        {200: ComponentOut},
    ),
    ("PATCH", COMPONENT, c.patch_component, "change a component", ComponentPatch, {200: ComponentOut}),
    ("DELETE", COMPONENT, c.delete_component, "delete a component and its history", None, {204: None}),
    (
        "POST",
        COMPONENT + "/deployments",
        c.create_deployment,
        "deploy an image (default: the component's) to an environment (default: the first); "
        "an earlier image redeploys it (rollback)",
        DeploymentRequest,
        {202: DeploymentView},
    ),
    (
        "GET",
        COMPONENT + "/deployments",
        c.list_deployments,
        "deployment history, newest first",
        None,
        {200: DeploymentList},
    ),
    (
        "POST",
        COMPONENT + "/promotions",
        c.create_promotion,
        "deploy the image running in one environment to the next one",
        PromotionRequest,
        {202: DeploymentView},
    ),
    (
        "POST",
        COMPONENT + "/executions",
        c.create_execution,
        "run a manual task once",
        ExecutionRequest,
        {202: ExecutionOut},
    ),
    (
        "GET",
        COMPONENT + "/executions",
        c.list_executions,
        "executions, newest first",
        None,
        {200: ExecutionList},
    ),
    ("GET", "/v1/deployments/{id}", c.get_deployment, "a deployment", None, {200: DeploymentView}),
]

HISTORY_QUERY: dict[str, dict[str, Any]] = {
    "environment": {"type": "string", "description": "only this environment"},
    "limit": {"type": "integer", "minimum": 1, "maximum": c.MAX_LIMIT, "default": c.DEFAULT_LIMIT},
}
HISTORIES = (c.list_deployments, c.list_executions)
NO_ADMIN_TOKEN = (t.enroll,)


def register(api: Api) -> None:
    for method, path, handler, summary, request, responses in ROUTES:
        api.route(
            method,
            path,
            handler,
            summary=summary,
            auth="none" if handler in NO_ADMIN_TOKEN else "admin",
            request=request,
            responses=responses,
            query=HISTORY_QUERY if handler in HISTORIES else None,
        )
