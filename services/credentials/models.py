"""Request and response bodies of the credentials HTTP API (they also make /openapi.json).

`auth` is a union discriminated by `type`. Passwords are `SecretStr` so that no
repr, log line or validation error can show them; responses have no field that
could hold one. Semantic rules (hosts, vendors, Docker configs) live in
`rules.py`; these models only check shapes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

AuthType = Literal["anonymous", "basic", "docker-config", "vendor"]
AUTH_TYPES: tuple[str, ...] = ("anonymous", "basic", "docker-config", "vendor")
Vendor = Literal["azure", "gcp", "aws"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnonymousAuth(_Strict):
    type: Literal["anonymous"]
    host: str = Field(description="registry host[:port], e.g. registry.hub.docker.com or ghcr.io")


class BasicAuth(_Strict):
    type: Literal["basic"]
    host: str = Field(description="registry host[:port], e.g. ghcr.io")
    username: str
    password: SecretStr = Field(description="write-only; stored in Vault, never returned")


class DockerConfigAuth(_Strict):
    type: Literal["docker-config"]
    config: dict[str, Any] | str = Field(
        description=(
            'a Docker config ({"auths": {"<host>": {"auth": "<base64 user:pass>"}}}) as an object or a '
            "JSON string; exactly one registry, no credsStore/credHelpers; write-only"
        )
    )
    host: str | None = Field(
        default=None, description="optional; when given it must be the registry under `auths`"
    )


class VendorAuth(_Strict):
    type: Literal["vendor"]
    host: str = Field(description="e.g. myacr.azurecr.io, europe-docker.pkg.dev, <acct>.dkr.ecr.<region>...")
    vendor: Vendor = Field(description="the data plane's cloud identity pulls (no secret is stored)")


Auth = Annotated[AnonymousAuth | BasicAuth | DockerConfigAuth | VendorAuth, Field(discriminator="type")]


class RegistryCreate(_Strict):
    display_name: str = Field(description="unique within the org (case-insensitive), 1-100 characters")
    auth: Auth


class RegistryUpdate(_Strict):
    """Rename, and/or rotate credentials (same `auth.type` and host as before)."""

    display_name: str | None = None
    auth: Auth | None = None


class RegistryOut(BaseModel):
    id: str
    display_name: str
    host: str = Field(description="canonical: lowercase, every Docker Hub host is docker.io")
    auth_type: AuthType
    username: str | None = None
    vendor: Vendor | None = None
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class RegistryList(BaseModel):
    items: list[RegistryOut]


class TestRequest(_Strict):
    repository: str | None = Field(
        default=None, description="also check pull access to this repository, e.g. library/nginx"
    )


class TestResult(BaseModel):
    ok: bool
    detail: str = Field(description="what was checked, or plainly what is wrong; never a secret")


class AuditEventOut(BaseModel):
    id: int
    org: str
    registry_id: str
    action: Literal["create", "update", "rotate", "delete", "test"]
    actor: str
    outcome: str = Field(description="succeeded, refused, failed (dependency down), ok or not_ok (test)")
    detail: str = ""
    at: datetime


class AuditList(BaseModel):
    items: list[AuditEventOut]
    next_before: int | None = Field(default=None, description="pass as ?before= for older events")
