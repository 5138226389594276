"""Request and response bodies of the gateway's HTTP API (they also make /openapi.json).

Only the entry points (and the app) import these; the `from_*` constructors
turn the records use cases return into bodies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from libs.contracts.messages import DeploymentView
from services.webhook_gateway.domain.records import AcceptedRow, TokenRow


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

    @classmethod
    def from_row(cls, row: TokenRow, token: str) -> TokenCreated:
        return cls(
            id=row.id,
            name=row.name,
            token=token,
            token_prefix=row.token_prefix,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )


class TokenOut(BaseModel):
    id: str
    name: str
    token_prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="updated at most once a minute")

    @classmethod
    def from_row(cls, row: TokenRow) -> TokenOut:
        """The row's fields of the same names (never its hash)."""
        return cls.model_validate(row, from_attributes=True)


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


class DeploymentOut(DeploymentView):
    """A deployment as the orchestrator reports it (`environment` is null until it picked one).

    The contract's `DeploymentView`, less its `schema_version` (a bus field, not part of this answer).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: SkipJsonSchema[Literal[1]] = Field(default=1, exclude=True)
    environment: str | None  # type: ignore[assignment]

    @classmethod
    def from_view(cls, view: DeploymentView) -> DeploymentOut:
        return cls.model_validate(view.model_dump())

    @classmethod
    def pending(cls, row: AcceptedRow) -> DeploymentOut:
        """A request accepted here that the orchestrator has not recorded yet."""
        return cls(
            id=row.deployment_id,
            org=row.binding.org,
            project=row.binding.project,
            component=row.binding.component,
            environment=None,
            image=row.image,
            status="pending",
            source="webhook",
            created_at=row.created_at,
            updated_at=row.created_at,
            timings={"accepted": row.created_at},
        )


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
