"""NATS subject names and JetStream streams, in one place.

Subjects are `landfall.v1.<area>.…`. A `Subjects` instance may carry a prefix
so that tests (and several stacks on one NATS) never see each other's
messages; production uses the empty prefix. Data-plane subjects put the data
plane id in a fixed position so that NATS permissions can grant an agent
exactly its own deploy and status subjects.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
# An `ImagePushed` is built from a webhook body of at most 64 KiB (the gateway's limit) plus what the
# gateway adds; anything near this is not an image event.
INTAKE_MAX_MSG_SIZE = 256 * KiB


class StreamSpec(BaseModel):
    """What `ensure_streams` creates: name, subjects and how long messages live."""

    model_config = ConfigDict(frozen=True)

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float
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
# 1,000 consumers unless the stream names its own limit (found by `make bench` at 1,000 data planes).
MAX_DATAPLANES = 100_000


@dataclass(frozen=True, slots=True)
class Subjects:
    prefix: str = ""

    def _s(self, rest: str) -> str:
        return f"{self.prefix}landfall.v1.{rest}"

    # --- JetStream: must not be lost --------------------------------------------------
    @property
    def image_pushed(self) -> str:
        """Gateway -> orchestrator: CI accepted an image (stream INTAKE)."""
        return self._s("images.pushed")

    def deploy(self, dataplane_id: str) -> str:
        """Orchestrator -> one agent: apply this (stream DATAPLANE)."""
        return self._s(f"dataplanes.{dataplane_id}.deploy")

    def status(self, dataplane_id: str) -> str:
        """One agent -> orchestrator: how a rollout or run went (stream STATUS)."""
        return self._s(f"dataplanes.{dataplane_id}.status")

    @property
    def all_status(self) -> str:
        return self._s("dataplanes.*.status")

    # --- core NATS: lossy by design, the source of truth is elsewhere -------------------
    def heartbeat(self, dataplane_id: str) -> str:
        return self._s(f"dataplanes.{dataplane_id}.heartbeat")

    def resolve(self, dataplane_id: str) -> str:
        """Orchestrator -> one agent (request-reply): resolve a tag from inside the cluster."""
        return self._s(f"dataplanes.{dataplane_id}.resolve")

    @property
    def all_heartbeats(self) -> str:
        return self._s("dataplanes.*.heartbeat")

    def deployment_changed(self, deployment_id: str) -> str:
        """Orchestrator -> gateways: a deployment's status changed (long-poll wake-up)."""
        return self._s(f"deployments.{deployment_id}.changed")

    @property
    def tokens_revoked(self) -> str:
        """Gateway -> every gateway replica: drop this token from your cache now."""
        return self._s("tokens.revoked")

    @property
    def apikeys_revoked(self) -> str:
        """Orchestrator -> every replica of every service: drop this API key from your cache now."""
        return self._s("apikeys.revoked")

    @property
    def components_changed(self) -> str:
        """Orchestrator -> gateways: a component changed or went away."""
        return self._s("components.changed")

    # --- request-reply (core NATS): the caller retries or answers 503 -----------------
    @property
    def rpc_registry_get(self) -> str:
        return self._s("rpc.credentials.registry.get")

    @property
    def rpc_pull_secret(self) -> str:
        return self._s("rpc.credentials.pull-secret")

    @property
    def rpc_resolve_image(self) -> str:
        return self._s("rpc.credentials.resolve-image")

    @property
    def rpc_config_secrets_seal(self) -> str:
        """Orchestrator -> credentials: seal an environment's config secrets for a data plane."""
        return self._s("rpc.credentials.config-secrets.seal")

    @property
    def rpc_component_get(self) -> str:
        return self._s("rpc.orchestrator.component.get")

    @property
    def rpc_deployment_get(self) -> str:
        return self._s("rpc.orchestrator.deployment.get")

    @property
    def rpc_registry_usage(self) -> str:
        return self._s("rpc.orchestrator.registry.usage")

    @property
    def rpc_apikey_lookup(self) -> str:
        return self._s("rpc.orchestrator.apikey.lookup")

    @property
    def rpc_dataplane_key(self) -> str:
        """Credentials -> orchestrator: a data plane's enrolled key (only credentials may ask)."""
        return self._s("rpc.orchestrator.dataplane.key")

    @property
    def rpc_agent_jwt_renew(self) -> str:
        """Agent -> orchestrator: a new NATS user JWT for the agent's own enrolled key."""
        return self._s("rpc.orchestrator.agent-jwt.renew")

    # --- the audit trail (JetStream) ---------------------------------------------------
    def audit(self, org: str) -> str:
        """Any service -> orchestrator: one change or refused attempt in `org` (stream AUDIT)."""
        return self._s(f"audit.{org}")

    @property
    def all_audit(self) -> str:
        return self._s("audit.*")

    # --- streams ---------------------------------------------------------------------
    def _stream(self, base: str) -> str:
        clean = "".join(c if c.isalnum() else "_" for c in self.prefix).strip("_").upper()
        return f"{clean}_{base}" if clean else base

    @property
    def intake_stream(self) -> StreamSpec:
        return StreamSpec(
            name=self._stream("LANDFALL_INTAKE"),
            subjects=(self.image_pushed,),
            max_age_seconds=7 * 24 * 3600,
            max_msg_size=INTAKE_MAX_MSG_SIZE,
            description="images accepted from CI, waiting for the orchestrator",
        )

    @property
    def dataplane_stream(self) -> StreamSpec:
        return StreamSpec(
            name=self._stream("LANDFALL_DATAPLANE"),
            subjects=(self._s("dataplanes.*.deploy"),),
            max_age_seconds=7 * 24 * 3600,
            description="deploy commands, one durable consumer per data plane",
            max_consumers=MAX_DATAPLANES,
        )

    @property
    def status_stream(self) -> StreamSpec:
        return StreamSpec(
            name=self._stream("LANDFALL_STATUS"),
            subjects=(self.all_status,),
            max_age_seconds=7 * 24 * 3600,
            description="rollout reports from agents",
        )

    @property
    def audit_stream(self) -> StreamSpec:
        return StreamSpec(
            name=self._stream("LANDFALL_AUDIT"),
            subjects=(self.all_audit,),
            max_age_seconds=30 * 24 * 3600,
            description="audit events from every service, until the orchestrator recorded them",
        )

    @property
    def streams(self) -> tuple[StreamSpec, ...]:
        return (self.intake_stream, self.dataplane_stream, self.status_stream, self.audit_stream)

    def agent_durable(self, dataplane_id: str) -> str:
        return f"agent-{dataplane_id}"
