"""Who may do what, and what they did: roles, API-key look-ups, revocations and audit events.

The orchestrator owns org API keys; every other service asks it over the bus
(`ApiKeyLookup` → `ApiKeyInfo`) and caches the answer until an `ApiKeyRevoked`
broadcast (or a reconnect) empties it. Every change and every refused attempt,
in every service, becomes an `AuditEvent` on the AUDIT stream (JetStream: none
is lost while the orchestrator is down), which the orchestrator records and
serves. No message here holds a secret: keys travel as SHA-256 digests and are
shown as prefixes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from libs.contracts.messages import Message

Role = Literal["viewer", "developer", "owner"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "developer", "owner")
"""In increasing power: each role may do everything the ones before it may."""


def role_allows(have: Role, need: Role) -> bool:
    return ROLES.index(have) >= ROLES.index(need)


ActorType = Literal["platform", "api_key", "ci_token", "agent", "anonymous"]
Outcome = Literal["ok", "refused"]


def _printable(value: object) -> object:
    """An audit item's text without NUL (PostgreSQL text cannot hold it): a request path or a name
    from hostile input keeps its item, with U+FFFD where the NUL was, instead of being dropped."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


class Actor(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    _no_nul = field_validator("id", "name", "component", mode="before")(_printable)

    type: ActorType
    id: str | None = None
    name: str | None = None
    component: str | None = Field(default=None, description="a CI token's component (project/component)")


class ApiKeyLookup(Message):
    """Any service -> orchestrator: whose key has this digest?"""

    key_sha256: str = Field(description="hex SHA-256 of the whole key")


class ApiKeyInfo(Message):
    id: str
    org: str
    name: str
    role: Role
    key_prefix: str
    expires_at: datetime | None = None
    revoked: bool = False


class ApiKeyRevoked(Message):
    """Orchestrator -> every replica of every service: forget this key now."""

    key_id: str
    org: str


class AuditEvent(Message):
    """One change or one refused attempt, as the service that saw it recorded it."""

    id: str
    time: datetime
    org: str
    service: str
    actor: Actor
    action: str = Field(description="what was attempted, e.g. 'registry.create', 'deployment.create'")
    target: str = Field(description="what it was done to: an id or the request path")
    outcome: Outcome
    status: int = Field(description="the HTTP status answered (or that would have been)")
    request_id: str | None = None
    detail: str = ""

    _no_nul = field_validator("org", "service", "action", "target", "request_id", "detail", mode="before")(
        _printable
    )
