"""Org API keys (create, list, revoke, look up) and the audit trail (record, read in pages).

What is subtle:

* A key is generated here, stored as its SHA-256 and prefix only, and handed back
  once to the route that answers 201; nothing else ever sees it (logs show the prefix).
* Revoking commits first, then announces `ApiKeyRevoked` on core NATS and flushes, all
  before the DELETE answers: every replica of every service drops the key from its cache
  on receipt, and each one's next request waits for its broadcasts (`Broadcasts.sync`),
  so the key fails everywhere as soon as the 204 is out. While NATS is away the announce
  is lost, but then no replica trusts its cache either (it is bypassed while disconnected
  and emptied on reconnect). Revoking again is allowed and announces again.
* `key_lookup` is what the orchestrator's own guard uses (no RPC to itself) and what the
  look-up RPC answers other services with: the same rows, the same `ApiKeyInfo`.
* Recording an audit event is idempotent by its id: JetStream redelivers what was not
  acked, and the second insert does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from libs.contracts.identity import ApiKeyInfo, ApiKeyRevoked, AuditEvent, Role
from libs.contracts.ids import looks_like, new_id
from libs.contracts.messages import utcnow
from libs.contracts.tokens import API_KEY, token_hash, token_prefix
from libs.runtime.broadcasts import Broadcasts
from libs.runtime.errors import Conflict, NotFound
from libs.runtime.store import Duplicate
from services.orchestrator.domain.access import ApiKey, AuditFilter, encode_cursor
from services.orchestrator.store import Store
from services.orchestrator.usecases.catalog import Catalog

log = logging.getLogger(__name__)

KeyLookup = Callable[[bytes], Awaitable[ApiKeyInfo | None]]


def key_lookup(store: Store) -> KeyLookup:
    """Whose key has this digest, from the store (None when nobody's)."""

    async def lookup(digest: bytes) -> ApiKeyInfo | None:
        key = await store.now.api_keys.by_digest(digest)
        return key.info() if key is not None else None

    return lookup


@dataclass(kw_only=True, eq=False)
class ApiKeys:
    store: Store
    catalog: Catalog
    broadcasts: Broadcasts
    lookup: KeyLookup = field(init=False)

    def __post_init__(self) -> None:
        self.lookup = key_lookup(self.store)

    async def create(
        self, org: str, *, name: str, role: Role, expires_in_days: int | None
    ) -> tuple[ApiKey, str]:
        """A new key of the org and the key itself (the only time it exists outside its holder)."""
        await self.catalog.org(org)
        secret = API_KEY.generate()
        now = utcnow()
        key = ApiKey(
            id=new_id("key"),
            org=org,
            name=name,
            role=role,
            key_sha256=token_hash(secret),
            key_prefix=token_prefix(secret),
            created_at=now,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
            revoked_at=None,
        )
        try:
            created = await self.store.now.api_keys.create(key)
        except Duplicate as exc:
            if exc.field == "key":  # 256 random bits: never, but not a 500 either
                raise Conflict("try again") from None
            raise Conflict(f"an API key named {name!r} exists already in this org") from None
        log.info(
            "api key created",
            extra={"org": org, "key_id": created.id, "key_prefix": created.key_prefix, "role": role},
        )
        return created, secret

    async def of_org(self, org: str) -> list[ApiKey]:
        await self.catalog.org(org)
        return await self.store.now.api_keys.of_org(org)

    async def revoke(self, org: str, key_id: str) -> ApiKey:
        """Revoke the org's key and tell every replica of every service before returning."""
        key = await self.store.now.api_keys.revoke(org, key_id) if looks_like("key", key_id) else None
        if key is None:
            raise NotFound(f"API key {key_id[:40]!r}")
        await self.broadcasts.announce(
            self.broadcasts.bus.subjects.apikeys_revoked, ApiKeyRevoked(key_id=key.id, org=org)
        )
        log.info("api key revoked", extra={"org": org, "key_id": key.id, "key_prefix": key.key_prefix})
        return key


@dataclass(kw_only=True, eq=False)
class AuditTrail:
    store: Store
    catalog: Catalog

    async def record(self, event: AuditEvent) -> bool:
        """Store one event; False when it was stored already (a redelivery)."""
        return await self.store.now.audit.insert(event)

    async def page(self, where: AuditFilter) -> tuple[list[AuditEvent], str | None]:
        """The org's events newest first, and the cursor of the next page (None on the last)."""
        await self.catalog.org(where.org)
        events = await self.store.now.audit.page(where)
        if len(events) <= where.limit:
            return events, None
        events = events[: where.limit]
        return events, encode_cursor(events[-1].id)
