"""Credentials service settings (`LANDFALL_*` environment variables)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from libs.runtime.settings import AdminSettings, DatabaseSettings, ServiceSettings, VaultSettings

LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]


class Settings(ServiceSettings, DatabaseSettings, VaultSettings, AdminSettings):
    service_name: str = "credentials"
    http_port: int = 8081

    insecure_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOOPBACK_HOSTS),
        description=(
            "registries spoken to over plain HTTP: a host name (any port) or host:port; comma-separated "
            "or a JSON list in LANDFALL_INSECURE_REGISTRIES. Everything else is HTTPS."
        ),
    )
    registry_private_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "non-global addresses registry calls may reach anyway (loopback, RFC 1918, link-local, CGNAT, "
            "unique-local, ...): host names, host:port or CIDR ranges; comma-separated or a JSON list in "
            "LANDFALL_REGISTRY_PRIVATE_HOSTS. Empty: registries are reached on public addresses only."
        ),
    )
    registry_token_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "hosts besides a registry's own that may serve its bearer token realm (Docker Hub's and "
            "GitLab.com's are known); comma-separated or a JSON list in LANDFALL_REGISTRY_TOKEN_HOSTS"
        ),
    )
    registry_timeout_seconds: float = Field(
        default=10.0, gt=0, description="total time for one call to a registry (each hop of the auth flow)"
    )
    registry_proxy_from_env: bool = Field(
        default=False, description="reach registries through HTTP(S)_PROXY / NO_PROXY from the environment"
    )
    rpc_timeout_seconds: float = Field(
        default=5.0, gt=0, description="how long to wait for the orchestrator (registry usage on delete)"
    )

    @field_validator("insecure_registries", "registry_private_hosts", "registry_token_hosts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value
