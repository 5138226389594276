"""NATS subject names and JetStream streams, in one place.

Subjects are `landfall.v1.<area>.…`. A `Subjects` instance may carry a prefix
so that tests (and several stacks on one NATS) never see each other's
messages; production uses the empty prefix. Data-plane subjects put the data
plane id in a fixed position so that NATS permissions can grant an agent
exactly its own deploy and status subjects.

`Subjects` is a table, one line a subject: `_Subject` makes an attribute
(`subjects.image_pushed`), `_with_id` a method taking the id that goes where
its pattern has `{}` (`subjects.deploy(dataplane_id)`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
# An `ImagePushed` is built from a webhook body of at most 64 KiB (the gateway's limit) plus what the
# gateway adds; anything near this is not an image event.
INTAKE_MAX_MSG_SIZE = 256 * KiB
DAY = 24 * 3600.0


class StreamSpec(BaseModel):
    """What `ensure_streams` creates: name, subjects and how long messages live."""

    model_config = ConfigDict(frozen=True)

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float = 7 * DAY
    duplicate_window_seconds: float = 120.0
    description: str = ""
    max_consumers: int | None = None  # None: the server's default (1,000 per stream since nats-server 2.15)
    max_bytes: int = GiB  # a stream never grows without bound (a full one refuses new messages)
    max_msg_size: int = MiB  # the server refuses a bigger message (nats-server's default max_payload)


# The orchestrator's durable consumers on INTAKE, STATUS and AUDIT (its consumers name them; its NATS
# user may read and ack these and no other).
ORCHESTRATOR_INTAKE_DURABLE = "orchestrator-intake"
ORCHESTRATOR_STATUS_DURABLE = "orchestrator-status"
ORCHESTRATOR_AUDIT_DURABLE = "orchestrator-audit"

# One durable consumer per data plane lives on the DATAPLANE stream; nats-server 2.15 caps a stream at
# 1,000 consumers unless the stream names its own limit, so the stream names one.
MAX_DATAPLANES = 100_000


class _Subject:
    """A subject with no id in it, read as an attribute: `subjects.image_pushed`."""

    def __init__(self, rest: str) -> None:
        self.rest = rest

    def __get__(self, subjects: Subjects, owner: type[Subjects]) -> str:
        return subjects._s(self.rest)


def _with_id(rest: str) -> Callable[[Subjects, str], str]:
    """A method, `subjects.deploy(dataplane_id)`: the subject with the id where `rest` has `{}`."""

    def subject(subjects: Subjects, id_: str) -> str:
        return subjects._s(rest.format(id_))

    return subject


@dataclass(frozen=True, slots=True)
class Subjects:
    prefix: str = ""

    def _s(self, rest: str) -> str:
        return f"{self.prefix}landfall.v1.{rest}"

    # --- JetStream: must not be lost --------------------------------------------------
    # Gateway -> orchestrator: CI accepted an image (stream INTAKE).
    image_pushed = _Subject("images.pushed")
    # Orchestrator -> one agent: apply this (stream DATAPLANE).
    deploy = _with_id("dataplanes.{}.deploy")
    # One agent -> orchestrator: how a rollout or run went (stream STATUS).
    status = _with_id("dataplanes.{}.status")
    all_status = _Subject("dataplanes.*.status")

    # --- core NATS: lossy by design, the source of truth is elsewhere -------------------
    heartbeat = _with_id("dataplanes.{}.heartbeat")
    all_heartbeats = _Subject("dataplanes.*.heartbeat")
    # Orchestrator -> one agent (request-reply): resolve a tag from inside the cluster.
    resolve = _with_id("dataplanes.{}.resolve")
    # Orchestrator -> gateways: a deployment's status changed (long-poll wake-up).
    deployment_changed = _with_id("deployments.{}.changed")
    # Gateway -> every gateway replica: drop this token from your cache now.
    tokens_revoked = _Subject("tokens.revoked")
    # Orchestrator -> every replica of every service: drop this API key from your cache now.
    apikeys_revoked = _Subject("apikeys.revoked")
    # Orchestrator -> gateways: a component changed or went away.
    components_changed = _Subject("components.changed")

    # --- request-reply (core NATS): the caller retries or answers 503 -----------------
    rpc_registry_get = _Subject("rpc.credentials.registry.get")
    rpc_pull_secret = _Subject("rpc.credentials.pull-secret")
    rpc_resolve_image = _Subject("rpc.credentials.resolve-image")
    # Orchestrator -> credentials: seal an environment's config secrets for a data plane.
    rpc_config_secrets_seal = _Subject("rpc.credentials.config-secrets.seal")
    rpc_component_get = _Subject("rpc.orchestrator.component.get")
    rpc_deployment_get = _Subject("rpc.orchestrator.deployment.get")
    rpc_registry_usage = _Subject("rpc.orchestrator.registry.usage")
    rpc_apikey_lookup = _Subject("rpc.orchestrator.apikey.lookup")
    # Credentials -> orchestrator: a data plane's enrolled key (only credentials may ask).
    rpc_dataplane_key = _Subject("rpc.orchestrator.dataplane.key")
    # Agent -> orchestrator: a new NATS user JWT for the agent's own enrolled key.
    rpc_agent_jwt_renew = _Subject("rpc.orchestrator.agent-jwt.renew")

    # --- the audit trail (JetStream) ---------------------------------------------------
    # Any service -> orchestrator: one change or refused attempt in an org (stream AUDIT).
    audit = _with_id("audit.{}")
    all_audit = _Subject("audit.*")

    # --- streams ---------------------------------------------------------------------
    def _stream(self, base: str) -> str:
        clean = "".join(c if c.isalnum() else "_" for c in self.prefix).strip("_").upper()
        return f"{clean}_{base}" if clean else base

    @property
    def intake_stream(self) -> StreamSpec:
        return StreamSpec(
            name=self._stream("LANDFALL_INTAKE"),
            subjects=(self.image_pushed,),
            max_msg_size=INTAKE_MAX_MSG_SIZE,
            description="images accepted from CI, waiting for the orchestrator",
        )

    @property
    def dataplane_stream(self) -> StreamSpec:
        return StreamSpec(
            name=self._stream("LANDFALL_DATAPLANE"),
            subjects=(self._s("dataplanes.*.deploy"),),
            description="deploy commands, one durable consumer per data plane",
            max_consumers=MAX_DATAPLANES,
        )

    @property
    def status_stream(self) -> StreamSpec:
        return StreamSpec(
            name=self._stream("LANDFALL_STATUS"),
            subjects=(self.all_status,),
            description="rollout reports from agents",
        )

    @property
    def audit_stream(self) -> StreamSpec:
        return StreamSpec(
            name=self._stream("LANDFALL_AUDIT"),
            subjects=(self.all_audit,),
            max_age_seconds=30 * DAY,
            description="audit events from every service, until the orchestrator recorded them",
        )

    @property
    def streams(self) -> tuple[StreamSpec, ...]:
        return (self.intake_stream, self.dataplane_stream, self.status_stream, self.audit_stream)

    def agent_durable(self, dataplane_id: str) -> str:
        return f"agent-{dataplane_id}"
