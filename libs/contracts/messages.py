"""Bus messages, version 1.

Each message carries `schema_version`; a consumer refuses (terminates, with a
log line) a version it does not know instead of guessing. Fields are added,
never renamed. No message holds a secret in clear text: registry credentials
travel only as a `SealedSecret` that only the target data plane can open.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from libs.contracts.config import WorkloadConfig

SCHEMA_VERSION: Final = 1

ComponentType = Literal["service", "web-application", "scheduled-task", "manual-task"]
DeploymentStatus = Literal["pending", "dispatched", "progressing", "succeeded", "failed", "superseded"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "superseded"})
ExecutionStatus = Literal["pending", "dispatched", "running", "succeeded", "failed"]
ReportStatus = Literal["progressing", "succeeded", "failed", "superseded"]
"""What an agent may report about a rollout (a subset of `DeploymentStatus`)."""
CommandKind = Literal["deploy", "run"]
AuthType = Literal["anonymous", "basic", "docker-config", "vendor"]
"""How a registry is reached: the `auth.type` of the credentials API."""
PullSecretReason = Literal["sealed", "anonymous", "vendor", "not_enrolled"]
"""`not_enrolled`: the data plane has no enrolled key (or is gone), so there is nobody to seal to."""
ResolveStatus = Literal["resolved", "not_found", "skipped", "unauthorized", "unreachable"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = SCHEMA_VERSION

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


# --- events and commands on JetStream -------------------------------------------------


class ImagePushed(Message):
    """CI told the gateway about a new image; the gateway validated it against the component."""

    deployment_id: str
    org: str
    project: str
    component: str
    image: str = Field(description="full, normalised reference: host/repository[:tag][@digest]")
    accepted_at: datetime
    token_prefix: str = Field(description="which CI token sent it (prefix only, for the audit trail)")
    idempotency_key: str | None = None


class SealedSecret(Message):
    """A dockerconfigjson sealed (libsodium sealed box) to one data plane's public key."""

    algorithm: Literal["curve25519-xsalsa20-poly1305-sealedbox"] = "curve25519-xsalsa20-poly1305-sealedbox"
    recipient_key_id: str = Field(description="sha256 of the recipient public key, hex, first 16 chars")
    ciphertext: str = Field(description="base64")
    registry_id: str


class SealedValues(Message):
    """A JSON object of named secret values (an environment's config secrets) sealed like a
    `SealedSecret` to one data plane's key. Only the agent of that data plane can open it."""

    algorithm: Literal["curve25519-xsalsa20-poly1305-sealedbox"] = "curve25519-xsalsa20-poly1305-sealedbox"
    recipient_key_id: str = Field(description="sha256 of the recipient public key, hex, first 16 chars")
    ciphertext: str = Field(description="base64 of the sealed JSON object {name: value}")


class CommandSignature(BaseModel):
    """The orchestrator's Ed25519 signature over a command (`libs.contracts.signing`): which key
    (`key_id`, the first 16 hex of sha256 of the public key) and the signature itself. A part of a
    message, not one: it has no `schema_version`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key_id: str = Field(max_length=64)
    value: str = Field(max_length=128, description="base64 of the 64-byte Ed25519 signature")


class CommandRef(Message):
    """Which command: a deploy (kind=deploy) or a task run (kind=run, `execution_id`) of a deployment
    on one data plane. A report names the command it is about with the same fields."""

    kind: CommandKind = "deploy"
    deployment_id: str
    execution_id: str | None = None
    dataplane_id: str


class DeployCommand(CommandRef):
    """Orchestrator -> agent: make the data plane run this (kind=deploy) or run a task once (kind=run)."""

    org: str
    project: str
    component: str
    environment: str
    namespace: str
    component_type: ComponentType
    image: str
    seq: int = Field(description="orders deployments of one component in one environment; newer wins")
    port: int | None = None
    schedule: str | None = None
    timezone: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    args: list[str] = Field(default_factory=list)
    ingress_class: str | None = None
    ingress_host: str | None = None
    pull_secret: SealedSecret | None = None
    config: WorkloadConfig | None = Field(
        default=None,
        description="the environment's config (its `env` already merged into `env` above); None from"
        " orchestrators older than per-environment config: one replica, no resources, no probes",
    )
    config_version: int | None = None
    secrets: SealedValues | None = Field(
        default=None, description="the environment's config secrets, sealed to this data plane's key"
    )
    secret_names: list[str] = Field(
        default_factory=list, description="the names inside `secrets` (the values stay sealed)"
    )
    dispatched_at: datetime
    signature: CommandSignature | None = Field(
        default=None,
        description="the orchestrator's signature; an agent refuses a command without a valid one",
    )


class ComponentRef(Message):
    """One component, by name: the fields that lead every message about a component."""

    org: str
    project: str
    component: str


class RemoveCommand(ComponentRef):
    """Orchestrator -> agent, on the same subject as deploys (so in order with them): the component
    was deleted; remove what Landfall applied for it in this environment. `seq` is above every
    deployment of the component: a deploy command with a lower seq that arrives later is stale."""

    kind: Literal["remove"] = "remove"
    teardown_id: str
    dataplane_id: str
    environment: str
    namespace: str
    seq: int
    sent_at: datetime
    signature: CommandSignature | None = Field(
        default=None,
        description="the orchestrator's signature; an agent refuses a removal without a valid one",
    )


def command_kind(data: bytes) -> str:
    """Which command a deploy-subject message holds ("deploy", "run" or "remove"), without trusting it."""
    try:
        decoded = json.loads(data)
    except ValueError:
        return "unreadable"
    kind = decoded.get("kind", "deploy") if isinstance(decoded, dict) else None
    return kind if isinstance(kind, str) else "unreadable"


class RolloutReport(CommandRef):
    """Agent -> orchestrator: what the data plane says about one deployment or run."""

    status: ReportStatus
    reason: str | None = None
    message: str | None = None
    digest: str | None = Field(
        default=None,
        description="the digest the cluster actually pulled (a Pod's imageID), when the command named a tag",
    )
    applied_at: datetime | None = None
    reported_at: datetime


class AgentHeartbeat(Message):
    dataplane_id: str
    version: str
    sent_at: datetime


class DeploymentView(Message):
    """A deployment as the public API shows it (also what gateways long-poll on)."""

    id: str
    org: str
    project: str
    component: str
    environment: str
    image: str
    digest: str | None = None
    status: DeploymentStatus
    reason: str | None = None
    detail: str | None = Field(
        default=None,
        description="the reason in words (e.g. what was tried before registry_unreachable)",
    )
    source: str | None = None
    config_version: int | None = Field(
        default=None, description="the environment's config version this deployment runs with"
    )
    rolled_back_by: str | None = Field(
        default=None, description="the deployment that rolled this failed one back (auto-rollback)"
    )
    notes: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    timings: dict[str, datetime] = Field(
        default_factory=dict,
        description="when each hop happened: accepted, recorded, dispatched, applied, reported, finished",
    )


class DeploymentChanged(Message):
    deployment: DeploymentView


class TokenRevoked(Message):
    token_id: str


class RegistryRef(Message):
    """One registry of an org: the fields that lead every request about a registry."""

    org: str
    registry_id: str


class ComponentChanged(ComponentRef):  # orchestrator -> gateways: it changed or went away
    pass


# --- request-reply --------------------------------------------------------------------

RpcErrorCode = Literal["not_found", "invalid", "unavailable", "internal"]


class RpcError(BaseModel):
    code: RpcErrorCode
    message: str


T = TypeVar("T")


class RpcReply(BaseModel, Generic[T]):
    schema_version: Literal[1] = SCHEMA_VERSION
    result: T | None = None
    error: RpcError | None = None


class RegistryGet(RegistryRef):
    pass


class RegistryInfo(Message):
    id: str
    org: str
    host: str
    auth_type: AuthType
    vendor: str | None = None


class PullSecretRequest(RegistryRef):
    """Seal a registry's pull secret for one data plane.

    The credentials service seals to the key the orchestrator has *enrolled* for `dataplane_id`
    (it asks `rpc.orchestrator.dataplane.key`), never to a key a requester brings: whoever can
    send this request must not be able to pick the recipient. `recipient_public_key` is kept
    so that older senders' requests still parse; it is ignored."""

    dataplane_id: str = Field(description="the data plane whose enrolled key the secret is sealed to")
    recipient_public_key: str = Field(default="", description="ignored (kept for older senders)")


class PullSecretReply(Message):
    sealed: SealedSecret | None = None
    reason: PullSecretReason = Field(description="why there is (no) secret")


class ResolveImage(RegistryRef):
    repository: str
    reference: str = Field(description="a tag or a digest")


class ResolvedImage(Message):
    status: ResolveStatus
    digest: str | None = None
    detail: str = ""


class ConfigSecretsSeal(ComponentRef):
    """Orchestrator -> credentials: seal one environment's config secrets (the Vault version the
    config names) to a data plane's *enrolled* key, as `PullSecretRequest` does."""

    environment: str
    version: int = Field(ge=1, description="the KV version of the secrets, as stored with the config")
    dataplane_id: str
    names: list[str] = Field(
        default_factory=list,
        description="seal only these (the names the config version records); empty: every name there",
    )


class ConfigSecretsReply(Message):
    sealed: SealedValues | None = None
    names: list[str] = Field(default_factory=list)
    reason: Literal["sealed", "empty", "not_enrolled", "not_found"] = "sealed"


class ResolveInCluster(Message):
    """Orchestrator -> one data plane's agent (core request-reply): resolve a tag to a digest from
    inside the cluster, for a registry the control plane cannot reach. `pull_secret` is sealed to
    that agent's key (None for anonymous registries)."""

    dataplane_id: str
    image: str = Field(description="host/repository:tag")
    pull_secret: SealedSecret | None = None


class ComponentGet(ComponentRef):
    pass


class ComponentInfo(ComponentRef):
    type: ComponentType
    registry_id: str
    registry_host: str
    repository: str
    require_signature: bool = False
    component_id: str | None = Field(
        default=None,
        description="the component's identity: a component re-created under the same name has another",
    )


class DeploymentGet(Message):
    deployment_id: str


class DataPlaneKeyGet(Message):
    """Credentials -> orchestrator: the enrolled sealing key of one org's data plane."""

    org: str
    dataplane_id: str


class DataPlaneKey(Message):
    public_key: str | None = Field(description="base64 X25519 key; None while no agent has enrolled")


class AgentJwtRenew(Message):
    """An agent asks for a new NATS user JWT for the key it enrolled with (before its JWT expires).
    `signature`: base64url Ed25519 over `natsauth.renewal_message(...)` by that user key's seed."""

    dataplane_id: str = Field(max_length=64)
    user_public_key: str = Field(max_length=64)
    issued_at: int = Field(ge=0, le=2**40, description="unix seconds; refused when far from the clock")
    signature: str = Field(max_length=128)


class AgentJwtRenewed(Message):
    jwt: str
    expires_at: int | None = None


class RegistryUsage(RegistryRef):
    pass


class RegistryUsageReply(Message):
    components: list[str]


def as_payload(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
