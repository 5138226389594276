"""What the orchestrator stores, as frozen records (the store decodes rows into them).

What is subtle:

* An image is pinned by digest before it reaches a data plane, so every replica
  (and a later promotion) runs exactly the bytes that were tested; the tag stays
  in the stored reference only for people to read (`Deployment.pinned_image`).
* `NewDeployment` is what is known when a deployment is asked for; the store
  draws its seq (acceptance order, under a lock) and its timestamps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from libs.contracts.messages import TERMINAL_STATUSES, DeploymentView
from libs.oci.reference import ImageReference, parse_reference


def record_fields(record: Any) -> dict[str, Any]:
    """A record's fields by name, not copied: what a response model validates (and copies)
    from. `dataclasses.asdict` deep-copies every value, datetimes too: 127 us for a deployment,
    whose view is built at each status change (the gateways' long-poll) and each read."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


@dataclass(frozen=True, slots=True)
class Org:
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DataPlane:
    id: str
    org: str
    name: str
    ingress_class: str | None
    public_key: str | None
    enrolled_at: datetime | None
    agent_version: str | None
    last_seen: datetime | None
    created_at: datetime
    enrollment_expires_at: datetime | None = None
    nats_user_public_key: str | None = None  # the agent's NATS user (renewal checks it; revoked on change)

    def connected(self, now: datetime, fresh: timedelta) -> bool:
        return self.last_seen is not None and now - self.last_seen <= fresh


@dataclass(frozen=True, slots=True)
class Environment:
    id: str
    org: str
    name: str
    dataplane_id: str
    order: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    org: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Component:
    id: str
    org: str
    project: str
    name: str
    type: str
    registry_id: str
    registry_host: str
    repository: str
    image: str
    port: int | None
    schedule: str | None
    timezone: str | None
    env: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @property
    def reference(self) -> ImageReference:
        return parse_reference(self.image)


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    component_id: str
    org: str
    project: str
    component: str
    environment: str
    dataplane_id: str | None
    seq: int
    image: str
    digest: str | None
    status: str
    reason: str | None
    message: str | None
    source: str
    notes: list[str]
    attempts: int
    accepted_at: datetime | None
    recorded_at: datetime
    dispatched_at: datetime | None
    applied_at: datetime | None
    reported_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    config_version: int | None = None
    rolled_back_by: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def pinned_image(self) -> str:
        """What the data plane pulls: `host/repository@digest` when known, else the reference as given."""
        return pinned_image(self.image, self.digest)

    def view(self) -> DeploymentView:
        hops = {
            "accepted": self.accepted_at,
            "recorded": self.recorded_at,
            "dispatched": self.dispatched_at,
            "applied": self.applied_at,
            "reported": self.reported_at,
            "finished": self.finished_at,
        }
        timings = {k: v for k, v in hops.items() if v is not None}
        # the fields DeploymentView declares (it ignores the others), created when it was recorded
        fields = {
            **record_fields(self),
            "created_at": self.recorded_at,
            "timings": timings,
            "detail": self.message,
        }
        return DeploymentView.model_validate(fields)


@dataclass(frozen=True, slots=True)
class Execution:
    id: str
    deployment_id: str
    component_id: str
    environment: str
    args: list[str]
    status: str
    reason: str | None
    message: str | None
    attempts: int
    created_at: datetime
    dispatched_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Teardown:
    """A deleted component's objects in one environment, to be removed by its data plane's agent."""

    id: str
    dataplane_id: str
    org: str
    project: str
    component: str
    environment: str
    namespace: str
    seq: int


@dataclass(frozen=True, slots=True)
class NewDeployment:
    """What is known when a deployment is asked for; the store adds seq and timestamps."""

    id: str
    component: Component
    environment: Environment | None
    image: str
    source: str
    digest: str | None = None
    status: str = "pending"
    reason: str | None = None
    message: str | None = None
    notes: list[str] = field(default_factory=list)
    accepted_at: datetime | None = None
    token_prefix: str | None = None
    idempotency_key: str | None = None
    config_version: int | None = None  # None: the environment's current config version


@dataclass(frozen=True, slots=True)
class EnvironmentConfig:
    """One version of a component's configuration in one environment (immutable once stored).

    `body` is a `libs.contracts.config.WorkloadConfig` as JSON; secrets are only named here, their
    values live in Vault at `secrets_version` (None: the environment has no secrets)."""

    component_id: str
    environment: str
    version: int
    body: dict[str, Any]
    secret_names: list[str]
    secrets_version: int | None
    created_at: datetime
    created_by: str | None


def pinned_image(image: str, digest: str | None) -> str:
    """`host/repository@digest` when the digest is known, else the reference as given."""
    if digest is None:
        return image
    reference = parse_reference(image)
    return f"{reference.name}@{digest}"
