"""Request and response bodies of the gateway's HTTP API (they also make /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from libs.contracts.messages import DeploymentStatus


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=100, description="what the token is for, e.g. 'github'")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenCreated(BaseModel):
    id: str
    name: str
    token: str = Field(description="shown once; store it in your CI's secret store")
    token_prefix: str
    created_at: datetime
    expires_at: datetime | None


class TokenOut(BaseModel):
    id: str
    name: str
    token_prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="updated at most once a minute")


class TokenList(BaseModel):
    items: list[TokenOut]


class DeployRequest(BaseModel):
    """Exactly one of `image`, `tag` or `digest`."""

    model_config = ConfigDict(extra="forbid")

    image: str | None = Field(default=None, description="full reference: host/repository:tag or @sha256:...")
    tag: str | None = Field(default=None, description="a tag of the component's repository")
    digest: str | None = Field(default=None, description="a digest of the component's repository")

    @model_validator(mode="after")
    def _exactly_one(self) -> DeployRequest:
        given = [name for name in ("image", "tag", "digest") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError('send exactly one of "image", "tag" or "digest"')
        return self


class DeployAccepted(BaseModel):
    deployment_id: str
    status: Literal["pending"] = "pending"
    status_url: str


class DeploymentOut(BaseModel):
    """A deployment as the orchestrator reports it (`environment` is null until it picked one)."""

    id: str
    org: str
    project: str
    component: str
    environment: str | None
    image: str
    digest: str | None = None
    status: DeploymentStatus
    reason: str | None = None
    source: str | None = None
    notes: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    timings: dict[str, datetime] = Field(default_factory=dict)


class SigningSecretCreated(BaseModel):
    secret: str = Field(description="whsec_…, shown once; sign requests with it (Standard Webhooks)")
    created_at: datetime
    required: bool = True


class SigningStatus(BaseModel):
    required: bool
    created_at: datetime | None = None


class CiSnippets(BaseModel):
    gateway_url: str
    image: str = Field(description="the image reference the snippets deploy (edit the tag part)")
    curl: str = Field(description="bash script: posts the image, waits for the rollout, fails on failure")
    github_actions: str
    gitlab_ci: str
