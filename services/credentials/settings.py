"""Credentials service settings (`LANDFALL_*` environment variables)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field

from libs.runtime.settings import HostList, OwnSchemaSettings, VaultSettings

LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]


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
