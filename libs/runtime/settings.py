"""Settings shared by all services, read from `LANDFALL_*` environment variables.

Secrets are `SecretStr` so that they never print in a repr, a log line or an
error. `VAULT_ADDR`/`VAULT_TOKEN` are accepted as well as the prefixed names,
because that is what every Vault user already has in their shell.

`LANDFALL_NATS_URL` is one URL or a comma-separated list (every node of a NATS cluster; the
client fails over between them and learns the rest from the cluster). `nats_servers` is the list.
A `tls://` URL is verified against `LANDFALL_NATS_CA_FILE` when set (a private CA, like the local
stack's), else against the system's CAs; the URLs may not mix `nats://` and `tls://`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_hosts(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


HostList = Annotated[list[str], NoDecode, BeforeValidator(_split_hosts)]
"""Hosts from one environment variable, comma-separated or a JSON list (`NoDecode`: pydantic-settings
would otherwise insist on JSON)."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANDFALL_", extra="ignore")

    service_name: str = "landfall"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="a NATS URL, or a comma-separated list of them (the nodes of a cluster)",
    )
    nats_replicas: int = Field(
        default=0,
        ge=0,
        le=5,
        description="JetStream replicas of every stream; 0: min(3, the cluster's size), R1 on one server",
    )
    nats_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle the NATS servers' certificates are checked against (tls://)"
    )
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_creds_file: Path | None = Field(
        default=None, description="NATS user JWT + seed (a `.creds` file): nats-server in operator mode"
    )
    bus_prefix: str = Field(default="", description="prefix for every subject and stream (test isolation)")
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    shutdown_timeout_seconds: float = 10.0
    version: str = "0.1.0"

    @field_validator("nats_url")
    @classmethod
    def _some_nats_url(cls, value: str) -> str:
        urls = [url.strip() for url in value.split(",") if url.strip()]
        if not urls:
            raise ValueError("give at least one NATS URL (comma-separated for a cluster)")
        schemes = {url.partition("://")[0] if "://" in url else "nats" for url in urls}
        if not schemes <= {"nats", "tls"}:
            raise ValueError("a NATS URL starts with nats:// or tls://")
        if len(schemes) > 1:
            raise ValueError(
                "the NATS URLs mix nats:// and tls://: every server of a cluster speaks the same"
            )
        return value

    @property
    def nats_servers(self) -> list[str]:
        """`nats_url` as the list nats-py's `servers=` takes."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @property
    def nats_tls(self) -> bool:
        return self.nats_servers[0].startswith("tls://")


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANDFALL_", extra="ignore")

    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    schema_suffix: str = Field(default="", pattern=r"^[a-z0-9_]*$", description="test isolation")
    database_pool_max: int = 10


class VaultSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANDFALL_", extra="ignore")

    vault_addr: str = Field(
        default="http://127.0.0.1:8200", validation_alias=AliasChoices("LANDFALL_VAULT_ADDR", "VAULT_ADDR")
    )
    vault_token: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("LANDFALL_VAULT_TOKEN", "VAULT_TOKEN"),
        description="this service's own token, with only its policy (libs/devstack/vault_policies.py);"
        " never the root token",
    )
    vault_mount: str = "secret"
    vault_prefix: str = "landfall"


class AdminSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANDFALL_", extra="ignore")

    admin_token: SecretStr = SecretStr("")


class OwnSchemaSettings(ServiceSettings, DatabaseSettings, AdminSettings):
    """What `libs.runtime.service.create_service_app` reads: a service on the bus with its own
    PostgreSQL schema and an admin token."""
