"""What may happen to the orchestrator's records: state machines, validation, images, pipeline order.

What is subtle:

* A deployment only moves forward (pending -> dispatched -> progressing -> terminal)
  and a terminal status never changes. Reports arrive out of order and more than
  once (JetStream redelivers), so "forward only" is what makes applying them
  idempotent; the same holds for executions.
* Validation reports every wrong field at once, each under the name the client
  sent (`InvalidFields`, one 422 naming them all).
* Only the component's own registry host and repository may run under it: a
  manual deployment of another image is `ImageNotAllowed` (403), an intake event
  for one is recorded `failed` (`checked_intake`) so CI sees why.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import re
import secrets
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from croniter import croniter

from libs.contracts import reasons
from libs.contracts.messages import TERMINAL_STATUSES
from libs.oci.reference import ImageReference, InvalidReference, canonical_host, parse_reference, validate_tag
from libs.runtime.errors import Forbidden, Invalid
from services.orchestrator.domain.records import Component, Deployment, Environment, NewDeployment

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


# --- errors ---------------------------------------------------------------------------------


# The longest an agent's NATS user JWT may live (`agent_jwt_ttl_seconds` is bounded by it). A
# revocation older than this plus an hour of clock skew revokes only expired JWTs, whatever TTL any
# replica used, so it may leave the account JWT (which would otherwise grow with every re-enrollment).
MAX_AGENT_JWT_TTL_SECONDS = 90 * 86400
REVOCATION_KEPT_SECONDS = MAX_AGENT_JWT_TTL_SECONDS + 3600


class InvalidFields(Invalid):
    """Several fields failed validation: one 422 problem that lists them all."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors[0]["field"], errors[0]["message"])
        self.detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        self.args = (self.detail,)
        self._errors = errors

    def errors(self) -> list[dict[str, str]]:
        return list(self._errors)


class ImageNotAllowed(Forbidden):
    """A manual deployment of an image that is not on the component's host and repository."""

    kind = "image-not-allowed"


class EnrollmentRefused(Exception):
    """The enrollment token is unknown, used or expired; `detail` says whom to ask for a new one."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


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
        return "failed", reasons.SUPERSEDED
    return report_status, None


# --- validation -----------------------------------------------------------------------------


class FieldErrors:
    """Collects every invalid field, then raises one `InvalidFields` naming them all."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, field_name: str, message: str) -> None:
        self.errors.append({"field": field_name, "message": message})

    def raise_if_any(self) -> None:
        if self.errors:
            raise InvalidFields(self.errors)


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


@dataclass(frozen=True, slots=True)
class ComponentSettings:
    """What creating or changing a component writes: its registry (the canonical host, once checked
    against the image's) and its validated spec (the type is written on create only)."""

    registry_id: str
    registry_host: str
    spec: ComponentSpec


def check_component_spec(
    *,
    type: str,
    image: str,
    port: int | None,
    schedule: str | None,
    timezone: str | None,
    env: dict[str, str],
) -> ComponentSpec:
    """Validate the type-dependent rules; raises `InvalidFields` listing every wrong field."""
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


# --- images ---------------------------------------------------------------------------------


def check_image_host(reference: ImageReference, registry_host: str) -> None:
    if canonical_host(reference.host) != canonical_host(registry_host):
        raise Invalid("image", f"host {reference.host!r} is not the registry's host {registry_host!r}")


def manual_image(component: Component, *, image: str | None, tag: str | None) -> ImageReference:
    """The image a manual deployment asks for: an explicit reference, the component's with a new tag,
    or (neither given) the component's own image. Only the component's host and repository may run."""
    if image is not None and tag is not None:
        raise Invalid("image", "give either image or tag, not both")
    base = component.reference
    if tag is not None:
        try:
            validate_tag(tag)
        except InvalidReference as exc:
            raise Invalid("tag", exc.reason) from None
        return ImageReference(host=base.host, repository=base.repository, tag=tag)
    if image is None:
        return base
    try:
        wanted = parse_reference(image)
    except InvalidReference as exc:
        raise Invalid("image", exc.reason) from None
    if (canonical_host(wanted.host), wanted.repository) != (canonical_host(base.host), base.repository):
        raise ImageNotAllowed(f"this component deploys only {base.name}; {wanted.name} is another image")
    return wanted


def checked_intake(new: NewDeployment) -> NewDeployment:
    """The gateway validated the event; still record as failed what this component could never run."""
    if new.environment is None:
        return dataclasses.replace(
            new,
            status="failed",
            reason=reasons.NO_ENVIRONMENT,
            message="the org has no environment to deploy to",
        )
    try:
        reference = parse_reference(new.image)
    except InvalidReference as exc:
        return dataclasses.replace(new, status="failed", reason=reasons.INVALID_IMAGE, message=exc.reason)
    component = new.component
    if (canonical_host(reference.host), reference.repository) != (
        component.registry_host,
        component.repository,
    ):
        return dataclasses.replace(
            new,
            status="failed",
            reason=reasons.IMAGE_NOT_ALLOWED,
            message="not the component's registry or repository",
        )
    return dataclasses.replace(new, image=str(reference), digest=reference.digest)


def same_image(deployment: Deployment, image: str, digest: str | None) -> bool:
    return deployment.image == image or (digest is not None and deployment.digest == digest)


# --- pipeline and retries -------------------------------------------------------------------


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
        raise Invalid("public_key", "not base64") from None
    if len(raw) != 32:
        raise Invalid("public_key", f"an X25519 public key is 32 bytes, this is {len(raw)}")
    return base64.b64encode(raw).decode()
