"""Org API keys and the audit trail's pages: the records and the rules, no I/O.

What is subtle:

* An `ApiKey` holds the SHA-256 of the key, never the key: the key exists only
  in the 201 answer that creates it. `info()` is what other services learn about
  it over the bus (`ApiKeyInfo`: no digest, no secret), and they decide from
  `revoked` and `expires_at` themselves, so a cached answer stays correct until
  the key expires without another look-up.
* An audit page's cursor is opaque to callers but is only the id of the last
  item they saw (ids are time-ordered, so "older than this id" is the next page).
  It is base64url so nobody builds one by hand, and it is checked on the way in:
  a cursor that does not decode to an audit event id is the caller's mistake
  (422), never a 500 and never a query with garbage in it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from libs.contracts.identity import ApiKeyInfo, Role
from libs.contracts.ids import looks_like
from libs.runtime.errors import Invalid


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    org: str
    name: str
    role: Role
    key_sha256: bytes
    key_prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def info(self) -> ApiKeyInfo:
        return ApiKeyInfo.model_validate(self, from_attributes=True)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which of an org's audit events a page shows: older than `before` (an event id), and matching."""

    org: str
    limit: int
    before: str | None = None
    action: str | None = None
    actor_id: str | None = None


def encode_cursor(event_id: str) -> str:
    return base64.urlsafe_b64encode(event_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The event id a cursor stands for; `Invalid("cursor")` for anything `encode_cursor` did not make."""
    if len(cursor) > 64:
        raise Invalid("cursor", "not a cursor of this endpoint: pass next_cursor from the previous page")
    try:
        event_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        event_id = ""
    if not looks_like("aud", event_id):
        raise Invalid("cursor", "not a cursor of this endpoint: pass next_cursor from the previous page")
    return event_id
