"""The orchestrator's HTTP bodies (requests and answers) as pydantic models.

They are the public contract of /work/shared/API.md and feed /openapi.json; the
deployment itself is `libs.contracts.messages.DeploymentView`, the same model
gateways receive over NATS, so the two can never drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from libs.contracts.config import MAX_ENV, EnvName, EnvValue, WorkloadConfig
from libs.contracts.identity import Actor, Outcome, Role
from libs.contracts.messages import ComponentType, DeploymentView, ExecutionStatus
from libs.runtime.http import NAME_PATTERN

Name = Annotated[
    str,
    Field(pattern=f"^{NAME_PATTERN}$", max_length=40, description="DNS-1123 label, at most 40 characters"),
]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- orgs -------------------------------------------------------------------------------------


class OrgCreate(Body):
    name: Name


class OrgOut(BaseModel):
    name: str
    created_at: datetime


# --- data planes ------------------------------------------------------------------------------


class DataPlaneCreate(Body):
    name: Name
    ingress_class: (
        Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)] | None
    ) = Field(default=None, description="Kubernetes IngressClass for web applications on this data plane")


class DataPlaneCreated(BaseModel):
    id: str
    name: str
    ingress_class: str | None = None
    enrollment_token: str = Field(description="one-time token for the agent's first start; shown only now")
    enrollment_expires_at: datetime | None = Field(
        default=None, description="the token is refused after this (ask for a new one)"
    )
    created_at: datetime


class AgentStatus(BaseModel):
    connected: bool = Field(description="a heartbeat arrived within the last 15 seconds")
    last_seen: datetime | None = None
    version: str | None = None


class DataPlaneOut(BaseModel):
    id: str
    name: str
    ingress_class: str | None = None
    enrolled: bool
    enrolled_at: datetime | None = None
    created_at: datetime
    agent: AgentStatus


class DataPlaneList(BaseModel):
    items: list[DataPlaneOut]


class EnrollRequest(Body):
    enrollment_token: Annotated[str, Field(min_length=1, max_length=256)]
    public_key: Annotated[str, Field(min_length=1, max_length=128, description="base64 X25519 public key")]
    version: Annotated[str, Field(max_length=64)] = "unknown"
    nats_user_public_key: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="nkeys user public key (U…): the agent's own NATS user"
    )


class EnrollReply(BaseModel):
    dataplane_id: str
    org: str
    name: str
    nats_jwt: str | None = Field(
        default=None, description="user JWT for nats_user_public_key, limited to this data plane"
    )
    nats_inbox_prefix: str | None = Field(
        default=None, description="the inbox prefix that JWT allows (nats-py `inbox_prefix`)"
    )
    command_keys: list[str] = Field(
        default_factory=list,
        description="base64 Ed25519 public keys whose signatures the agent accepts on commands (it pins"
        " them): the current one and, while rotating, the next",
    )


# --- environments and projects ----------------------------------------------------------------


class EnvironmentCreate(Body):
    name: Name
    dataplane_id: Id
    order: Annotated[
        int, Field(ge=-(2**31), le=2**31 - 1, description="pipeline position; lowest = CI deploys")
    ]


class EnvironmentOut(BaseModel):
    name: str
    dataplane_id: str
    order: int
    created_at: datetime


class EnvironmentList(BaseModel):
    items: list[EnvironmentOut]


class ProjectCreate(Body):
    name: Name


class ProjectOut(BaseModel):
    name: str
    created_at: datetime


class ProjectList(BaseModel):
    items: list[ProjectOut]


# --- components -------------------------------------------------------------------------------

EnvVars = Annotated[dict[str, Annotated[str, Field(max_length=32768)]], Field(max_length=200)]


class ComponentCreate(Body):
    name: Name
    type: ComponentType
    registry_id: Id
    image: Annotated[
        str, Field(min_length=1, max_length=2048, description="full reference on the registry's host")
    ]
    port: int | None = Field(default=None, description="service and web-application only; default 8080")
    schedule: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="5-field cron; scheduled-task only (required there)"
    )
    timezone: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="IANA time zone; scheduled-task only (required there)"
    )
    env: EnvVars = Field(default_factory=dict)


class ComponentPatch(Body):
    registry_id: Id | None = None
    image: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    port: int | None = None
    schedule: Annotated[str, Field(max_length=200)] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = None
    env: EnvVars | None = None


class RunningImage(BaseModel):
    image: str
    digest: str | None = None
    deployment_id: str
    status: str


class ComponentOut(BaseModel):
    org: str
    project: str
    name: str
    type: ComponentType
    registry_id: str
    image: str
    port: int | None = None
    schedule: str | None = None
    timezone: str | None = None
    env: dict[str, str]
    created_at: datetime
    updated_at: datetime
    environments: dict[str, RunningImage] = Field(
        description="per environment, the image running there (its last succeeded deployment)"
    )


class ComponentList(BaseModel):
    items: list[ComponentOut]


# --- per-environment config ------------------------------------------------------------------


class ConfigIn(WorkloadConfig):
    """A `PUT …/config` body: every field but `secrets` replaces the stored one. Unknown fields are
    refused (a misspelt `replica` must not be dropped silently); `version`, `secret_names` and
    `deployment_id` are accepted and ignored, so an answer can be sent back changed."""

    secrets: dict[EnvName, EnvValue | None] = Field(
        default_factory=dict,
        max_length=MAX_ENV,
        description="a string sets that secret, null deletes it, an absent name keeps it (write-only)",
    )
    version: int | None = Field(default=None, description="ignored: the server counts versions")
    secret_names: list[str] | None = Field(default=None, description="ignored: answers list them")
    deployment_id: str | None = Field(default=None, description="ignored")


class ConfigOut(WorkloadConfig):
    """An environment's config as stored: never a secret's value, only the names."""

    version: int = Field(description="grows with every change; 0: never configured (the defaults)")
    secret_names: list[str] = Field(default_factory=list)
    deployment_id: str | None = Field(
        default=None, description="the deployment that rolls this change out (something runs there)"
    )


# --- deployments, promotions, executions ------------------------------------------------------


class DeploymentRequest(Body):
    environment: Name | None = Field(default=None, description="default: the first environment")
    image: Annotated[str, Field(min_length=1, max_length=2048)] | None = Field(
        default=None,
        description="full reference on the component's registry host and repository; an earlier image "
        "(host/repository@digest from the history) redeploys it as a rollback",
    )
    tag: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="replaces the tag of the component's image"
    )


class PromotionRequest(Body):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    from_: Name = Field(alias="from")
    to: Name


class DeploymentList(BaseModel):
    items: list[DeploymentView]


class ExecutionRequest(Body):
    environment: Name | None = None
    args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=100)] = Field(
        default_factory=list
    )


class ExecutionOut(BaseModel):
    id: str
    status: ExecutionStatus
    args: list[str]
    environment: str
    deployment_id: str
    reason: str | None = None
    created_at: datetime
    updated_at: datetime


class ExecutionList(BaseModel):
    items: list[ExecutionOut]


# --- API keys and the audit trail -------------------------------------------------------------


class ApiKeyCreate(Body):
    name: Annotated[
        str, Field(min_length=1, max_length=100, description="what the key is for, e.g. 'laptop'")
    ]
    role: Role
    expires_in_days: int | None = Field(default=None, ge=1, le=3650, description="default: never expires")


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: Role
    key_prefix: str = Field(description="the key's first characters, to recognise it")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="lfk_…: shown only in this answer; send it as 'Authorization: Bearer …'")


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


class AuditItem(BaseModel):
    id: str
    time: datetime
    actor: Actor = Field(
        description="platform, api_key (id, name), ci_token (id, name, component), agent (id)"
    )
    action: str = Field(description="e.g. 'component.create', 'apikey.revoke'")
    target: str = Field(description="an id or the request path")
    outcome: Outcome
    status: int = Field(description="the HTTP status answered")
    request_id: str | None
    service: str = Field(description="which service saw it")
    detail: str = ""


class AuditList(BaseModel):
    items: list[AuditItem] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
