"""Plain records the gateway's layers pass around."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class Binding:
    """The one component a CI token (and everything it sends) belongs to."""

    org: str
    project: str
    component: str

    def __str__(self) -> str:
        return f"{self.org}/{self.project}/{self.component}"

    def parts(self) -> tuple[str, str, str]:
        return self.org, self.project, self.component


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    binding: Binding
    name: str
    token_prefix: str
    token_sha256: bytes
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    # The component it was made for (None: made before tokens recorded it). A component deleted and
    # created again under the same name is another component: its predecessor's tokens do not work.
    component_id: str | None = None

    def belongs_to(self, component_id: str | None) -> bool:
        return self.component_id is None or component_id is None or self.component_id == component_id


@dataclass(frozen=True, slots=True)
class AcceptedRow:
    """A request the gateway accepted (and answered 202 for, once it is on JetStream)."""

    deployment_id: str
    token_id: str
    binding: Binding
    image: str
    idempotency_key: str | None
    created_at: datetime


AcceptOutcome = Literal["created", "replayed", "key_mismatch", "webhook_replayed"]


@dataclass(frozen=True, slots=True)
class SigningState:
    """Whether a component's webhooks must be signed and, if so, its HMAC key (None: no secret)."""

    required: bool
    key: bytes | None = None
