"""The orchestrator's pure logic: the objects, their rules and the deployment state machine.

Nothing here does I/O, so every rule can be tested without a server. What is subtle:

* A deployment only moves forward (pending -> dispatched -> progressing -> terminal)
  and a terminal status never changes. Reports arrive out of order and more than
  once (JetStream redelivers), so "forward only" is what makes applying them
  idempotent; the same holds for executions.
* An image is pinned by digest before it reaches a data plane, so every replica
  (and a later promotion) runs exactly the bytes that were tested; the tag stays
  in the stored reference only for people to read.
* Validation reports every wrong field at once, each under the name the client sent.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import secrets
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from croniter import croniter

from libs.contracts.messages import TERMINAL_STATUSES, DeploymentView
from libs.oci.reference import ImageReference, InvalidReference, canonical_host, parse_reference, validate_tag
from libs.runtime.errors import ProblemError, invalid

COMPONENT_TYPES: Final = ("service", "web-application", "scheduled-task", "manual-task")
NETWORKED_TYPES: Final = frozenset({"service", "web-application"})
DEFAULT_PORT: Final = 8080
ENV_KEY_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$", re.ASCII)
ENROLLMENT_TOKEN_PREFIX: Final = "lfenr_"

_DEPLOYMENT_RANK: Final = {
    "pending": 0,
    "dispatched": 1,
    "progressing": 2,
    "succeeded": 3,
    "failed": 3,
    "superseded": 3,
}
_EXECUTION_RANK: Final = {"pending": 0, "dispatched": 1, "running": 2, "succeeded": 3, "failed": 3}
EXECUTION_TERMINAL: Final = frozenset({"succeeded", "failed"})

NOTE_VENDOR_TAG: Final = "tag not pinned: vendor registry"


# --- objects ------------------------------------------------------------------------------


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
        return DeploymentView(
            id=self.id,
            org=self.org,
            project=self.project,
            component=self.component,
            environment=self.environment,
            image=self.image,
            digest=self.digest,
            status=self.status,
            reason=self.reason,
            source=self.source,
            notes=list(self.notes),
            created_at=self.recorded_at,
            updated_at=self.updated_at,
            timings={k: v for k, v in hops.items() if v is not None},
        )


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
    """What is known when a deployment is asked for; the repository adds seq and timestamps."""

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


# --- state machines -------------------------------------------------------------------------


def deployment_may_move(current: str, new: str) -> bool:
    """Forward only; a terminal status never changes (late and repeated reports are no-ops)."""
    if current in TERMINAL_STATUSES:
        return False
    return _DEPLOYMENT_RANK[new] > _DEPLOYMENT_RANK[current]


def deployment_may_move_from(new: str) -> list[str]:
    """The statuses a deployment may be in for `new` to apply (`deployment_may_move`, as a list)."""
    return [current for current in _DEPLOYMENT_RANK if deployment_may_move(current, new)]


def execution_may_move(current: str, new: str) -> bool:
    if current in EXECUTION_TERMINAL:
        return False
    return _EXECUTION_RANK[new] > _EXECUTION_RANK[current]


def execution_status_for(report_status: str) -> tuple[str, str | None]:
    """A run report's status in execution terms (a superseded run did not succeed)."""
    if report_status == "progressing":
        return "running", None
    if report_status == "superseded":
        return "failed", "superseded"
    return report_status, None


# --- validation -----------------------------------------------------------------------------


class FieldErrors:
    """Collects every invalid field, then raises one 422 problem naming them all."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, field_name: str, message: str) -> None:
        self.errors.append({"field": field_name, "message": message})

    def raise_if_any(self) -> None:
        if self.errors:
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in self.errors[:5])
            raise ProblemError(422, "Validation Failed", detail, kind="validation-failed", errors=self.errors)


@functools.cache
def _iana_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_timezone(name: str) -> bool:
    return name in _iana_zones()


def valid_schedule(expression: str) -> bool:
    """A standard 5-field cron expression (what a Kubernetes CronJob takes), no macros or seconds."""
    fields = expression.split()
    if len(fields) != 5 or any(f.startswith("@") for f in fields) or "TZ=" in expression:
        return False
    return bool(croniter.is_valid(" ".join(fields)))


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    """A component's deployable settings after validation."""

    type: str
    image: ImageReference
    port: int | None
    schedule: str | None
    timezone: str | None
    env: dict[str, str]


def check_component_spec(
    *,
    type: str,
    image: str,
    port: int | None,
    schedule: str | None,
    timezone: str | None,
    env: dict[str, str],
) -> ComponentSpec:
    """Validate the type-dependent rules; raises a 422 problem listing every wrong field."""
    errors = FieldErrors()
    reference: ImageReference | None = None
    try:
        reference = parse_reference(image)
    except InvalidReference as exc:
        errors.add("image", exc.reason)

    if type in NETWORKED_TYPES:
        if port is None:
            port = DEFAULT_PORT
        elif not 1 <= port <= 65535:
            errors.add("port", "must be between 1 and 65535")
    elif port is not None:
        errors.add("port", f"a {type} does not listen on a port; leave port out")

    if type == "scheduled-task":
        if not schedule:
            errors.add("schedule", "a scheduled-task needs a schedule (5-field cron, e.g. '*/15 * * * *')")
        elif not valid_schedule(schedule):
            errors.add(
                "schedule", "not a 5-field cron expression (minute hour day-of-month month day-of-week)"
            )
        else:
            schedule = " ".join(schedule.split())
        if not timezone:
            errors.add("timezone", "a scheduled-task needs an IANA time zone, e.g. 'Europe/Paris' or 'UTC'")
        elif not valid_timezone(timezone):
            errors.add("timezone", "not an IANA time zone name, e.g. 'Europe/Paris' or 'UTC'")
    else:
        if schedule is not None:
            errors.add("schedule", "only a scheduled-task has a schedule")
        if timezone is not None:
            errors.add("timezone", "only a scheduled-task has a time zone")

    for key in env:
        if not ENV_KEY_RE.match(key) or len(key) > 256:
            errors.add(f"env.{key[:64]}", "not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    errors.raise_if_any()
    assert reference is not None
    return ComponentSpec(
        type=type, image=reference, port=port, schedule=schedule, timezone=timezone, env=dict(env)
    )


def check_image_host(reference: ImageReference, registry_host: str) -> None:
    if canonical_host(reference.host) != canonical_host(registry_host):
        raise invalid("image", f"host {reference.host!r} is not the registry's host {registry_host!r}")


def manual_image(component: Component, *, image: str | None, tag: str | None) -> ImageReference:
    """The image a manual deployment asks for: an explicit reference, the component's with a new tag,
    or (neither given) the component's own image. Only the component's host and repository may run."""
    if image is not None and tag is not None:
        raise invalid("image", "give either image or tag, not both")
    base = component.reference
    if tag is not None:
        try:
            validate_tag(tag)
        except InvalidReference as exc:
            raise invalid("tag", exc.reason) from None
        return ImageReference(host=base.host, repository=base.repository, tag=tag)
    if image is None:
        return base
    try:
        wanted = parse_reference(image)
    except InvalidReference as exc:
        raise invalid("image", exc.reason) from None
    if (canonical_host(wanted.host), wanted.repository) != (canonical_host(base.host), base.repository):
        raise ProblemError(
            403,
            "Forbidden",
            f"this component deploys only {base.name}; {wanted.name} is another image",
            kind="image-not-allowed",
        )
    return wanted


def pinned_image(image: str, digest: str | None) -> str:
    if digest is None:
        return image
    reference = parse_reference(image)
    return f"{reference.name}@{digest}"


def next_environment(environments: Sequence[Environment], name: str) -> Environment | None:
    """The environment right after `name` in pipeline order (environments sorted by order)."""
    names = [e.name for e in environments]
    index = names.index(name)
    return environments[index + 1] if index + 1 < len(environments) else None


def retry_delay(attempts: int, *, base: float, cap: float) -> float:
    """Exponential backoff for retries that depend on something outside our control."""
    return float(min(cap, base * 2 ** min(attempts, 10)))


# --- enrollment -----------------------------------------------------------------------------


def new_enrollment_token() -> str:
    return ENROLLMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_public_key(value: str) -> str:
    """A base64 X25519 public key (32 bytes); returns it in canonical base64."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("public_key", "not base64") from None
    if len(raw) != 32:
        raise invalid("public_key", f"an X25519 public key is 32 bytes, this is {len(raw)}")
    return base64.b64encode(raw).decode()
