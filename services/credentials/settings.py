"""Credentials service settings (`LANDFALL_*` environment variables)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from libs.runtime.settings import OwnSchemaSettings, VaultSettings

LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

HostList = Annotated[list[str], NoDecode]
"""Hosts from one environment variable, comma-separated or a JSON list (`Settings._split` reads both)."""


def _hosts(description: str, *, default: Callable[[], list[str]] = list) -> Any:
    """A `HostList` field: empty unless `default` says otherwise."""
    return Field(default_factory=default, description=description)


class Settings(OwnSchemaSettings, VaultSettings):
    service_name: str = "credentials"
    http_port: int = 8081

    insecure_registries: HostList = _hosts(
        "registries spoken to over plain HTTP: a host name (any port) or host:port; comma-separated "
        "or a JSON list in LANDFALL_INSECURE_REGISTRIES. Everything else is HTTPS.",
        default=lambda: list(LOOPBACK_HOSTS),
    )
    registry_private_hosts: HostList = _hosts(
        "non-global addresses registry calls may reach anyway (loopback, RFC 1918, link-local, CGNAT, "
        "unique-local, ...): host names, host:port or CIDR ranges; comma-separated or a JSON list in "
        "LANDFALL_REGISTRY_PRIVATE_HOSTS. Empty: registries are reached on public addresses only."
    )
    registry_token_hosts: HostList = _hosts(
        "hosts besides a registry's own that may serve its bearer token realm (Docker Hub's and "
        "GitLab.com's are known); comma-separated or a JSON list in LANDFALL_REGISTRY_TOKEN_HOSTS"
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
