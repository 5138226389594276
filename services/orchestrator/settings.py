"""Orchestrator settings (`LANDFALL_*` environment variables).

Its Vault token (`LANDFALL_VAULT_TOKEN`) may only write per-environment config secrets (policy in
libs/devstack/vault_policies.py): the orchestrator never reads a secret back.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from libs.runtime.settings import OwnSchemaSettings, VaultSettings
from services.orchestrator.domain.rules import MAX_AGENT_JWT_TTL_SECONDS


class Settings(OwnSchemaSettings, VaultSettings):
    service_name: str = "orchestrator"
    http_port: int = 8082

    heartbeat_fresh_seconds: float = Field(
        default=15.0, description="an agent counts as connected when its last heartbeat is this recent"
    )
    sweep_interval_seconds: float = Field(
        default=2.0, description="how often pending deployments and executions are dispatched again"
    )
    max_retry_seconds: float = Field(
        default=60.0, description="longest wait between retries while a registry is unreachable"
    )
    rpc_timeout_seconds: float = Field(
        default=5.0, description="how long to wait for the credentials service"
    )
    registry_unreachable_seconds: float = Field(
        default=90.0,
        gt=0,
        description="a deployment whose tag neither the control plane nor the data plane's agent could"
        " resolve is failed (registry_unreachable) this long after it was recorded",
    )
    consumer_concurrency: int = Field(
        default=16,
        ge=1,
        description="intake events (of different components) and status reports handled at once",
    )
    heartbeat_write_seconds: float = Field(
        default=7.5,
        ge=0.0,
        description="a connected agent's heartbeat is written at most this often; its first one at once"
        " (keep it plus the agents' 5 s interval below heartbeat_fresh_seconds)",
    )
    enrollment_token_ttl_seconds: float = Field(
        default=86400.0,
        gt=0,
        description="an unused enrollment token expires after this long (an admin can issue a new one)",
    )
    nats_account_signing_seed: SecretStr | None = Field(
        default=None,
        description="seed of the NATS account's signing key: enrolled agents get their own NATS user",
    )
    nats_account: str | None = Field(
        default=None, description="public key of that NATS account (when the seed is a signing key)"
    )
    agent_jwt_ttl_seconds: float = Field(
        default=86400.0,
        ge=2,
        le=MAX_AGENT_JWT_TTL_SECONDS,
        description="an agent's NATS user JWT expires after this long; a running agent renews it before",
    )
    nats_operator_signing_seed: SecretStr | None = Field(
        default=None,
        description="seed of a NATS operator signing key: re-signs the account JWT with revoked agent users",
    )
    nats_system_creds_file: Path | None = Field(
        default=None,
        description="a system-account user's .creds that may push account JWTs ($SYS.REQ.CLAIMS.UPDATE)",
    )
    command_signing_seed: SecretStr | None = Field(
        default=None,
        description="base64 Ed25519 seed signing every command sent to agents (or command_signing_seed_file)",
    )
    command_signing_seed_file: Path | None = Field(
        default=None, description="a file holding that seed (base64 or 32 raw bytes), e.g. a mounted Secret"
    )
    command_next_public_key: str | None = Field(
        default=None,
        description="rotation: the next signing key's base64 public key, announced to agents at enrollment",
    )
