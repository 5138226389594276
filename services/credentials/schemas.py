"""Request and response bodies of the credentials HTTP API (they also make /openapi.json).

`auth` is a union discriminated by `type`; each member converts itself into the
domain's `RegistryAuth` (`to_domain`), the only way the rest of the service
sees a request. Passwords are `SecretStr` so that no repr, log line or
validation error can show them; responses have no field that could hold one.
Semantic rules (hosts, vendors, Docker configs) live in `domain`; these models
only check shapes. The class names are the OpenAPI component names.

What is subtle: pydantic reports a union member's errors under its tag
(`auth.basic.password`); `pydantic_errors` takes the tag out so that a 422 names
the API field (`auth.password`), exactly as the domain's rules do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from libs.contracts.messages import AuthType
from libs.oci.vendors import FieldError, Vendor
from services.credentials import domain


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnonymousAuth(_Strict):
    type: Literal["anonymous"]
    host: str = Field(description="registry host[:port], e.g. registry.hub.docker.com or ghcr.io")

    def to_domain(self) -> domain.AnonymousAccess:
        return domain.AnonymousAccess(host=self.host)


class BasicAuth(_Strict):
    type: Literal["basic"]
    host: str = Field(description="registry host[:port], e.g. ghcr.io")
    username: str
    password: SecretStr = Field(description="write-only; stored in Vault, never returned")

    def to_domain(self) -> domain.Login:
        return domain.Login(host=self.host, username=self.username, password=self.password.get_secret_value())


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

    def to_domain(self) -> domain.DockerConfigLogin:
        return domain.DockerConfigLogin(config=self.config, host=self.host)


class VendorAuth(_Strict):
    type: Literal["vendor"]
    host: str = Field(description="e.g. myacr.azurecr.io, europe-docker.pkg.dev, <acct>.dkr.ecr.<region>...")
    vendor: Vendor = Field(description="the data plane's cloud identity pulls (no secret is stored)")

    def to_domain(self) -> domain.VendorIdentity:
        return domain.VendorIdentity(host=self.host, vendor=self.vendor)


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


def pydantic_errors(exc: ValidationError) -> list[FieldError]:
    """Field errors from pydantic with the union's tag taken out of the path.

    Pydantic reports `auth.basic.password`; the API field is `auth.password`.
    A missing or unknown `type` is reported on `auth.type`.
    """
    errors: list[FieldError] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(p) for p in err["loc"]]
        if len(loc) >= 2 and loc[0] == "auth" and loc[1] in domain.AUTH_TYPES:
            del loc[1]
        kind = err["type"]
        if kind in ("union_tag_not_found", "union_tag_invalid"):
            loc = [*loc, "type"]
            message = f"type must be one of: {', '.join(domain.AUTH_TYPES)}"
        elif kind == "model_attributes_type" and loc == ["auth"]:
            message = "auth must be an object with a type"
        elif kind == "missing":
            message = f"{loc[-1]} is required"
        elif kind == "extra_forbidden":
            message = f"{loc[-1]} is not a field here" + (" for this auth type" if loc[0] == "auth" else "")
        else:
            message = err["msg"]
        errors.append(FieldError(".".join(loc) or "body", message))
    return errors
