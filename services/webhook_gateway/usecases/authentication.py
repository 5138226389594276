"""CI token authentication with a per-replica cache that revocation empties at once.

The hot path (a CI token already seen) costs no database round trip: validated
tokens are cached by their SHA-256 in a `BroadcastCache` (libs/runtime/cache.py),
which is *not* time-based; it is kept honest by events:
- a revocation drops the entry here and is broadcast (`TokenRevoked`) so every
  replica drops it too; before a CI request uses the cache, `CiAccess.admit`
  waits for `Broadcasts.sync()` (libs/runtime/broadcasts.py), one shared NATS
  round trip after which every broadcast published before the request arrived
  has been applied (so "revoked" means revoked for the very next request on any
  replica, not "soon");
- a revocation that raced with a database read cannot re-insert the token (the
  cache's ticket);
- a replica that lost its NATS connection may have missed broadcasts, so the
  cache is bypassed while disconnected and emptied after every reconnect;
- as a backstop, the once-a-minute `last_used_at` write re-reads `revoked_at`.

Lookups are by SHA-256 of the token (an index lookup on a hash reveals nothing
useful through timing), and the stored hash is compared in constant time.
Refusals are `Unauthenticated`; the entry points add `WWW-Authenticate`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from libs.runtime.broadcasts import Broadcasts
from libs.runtime.cache import BroadcastCache
from libs.runtime.ratelimit import RateLimiter
from services.webhook_gateway.domain.errors import RateLimited, Unauthenticated
from services.webhook_gateway.domain.records import TokenRow
from services.webhook_gateway.domain.tokens import token_hash, token_prefix, well_formed
from services.webhook_gateway.store.tokens import TokenRepo

log = logging.getLogger(__name__)

REVOKED = "this CI token was revoked; create a new one"


@dataclass
class CachedToken:
    row: TokenRow
    touched_at: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class TokenAuthenticator:
    tokens: TokenRepo
    _: KW_ONLY
    cache: BroadcastCache[bytes, CachedToken]
    touch_interval: float
    checks: Counter
    lookups: Counter
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = _utcnow

    def revoked(self, token_id: str) -> None:
        """Forget a token now (called for local revocations and for `TokenRevoked` broadcasts)."""
        self.cache.forget_where(lambda cached: cached.row.id == token_id)

    def _refuse(
        self, result: str, detail: str, prefix: str | None = None, *, row: TokenRow | None = None
    ) -> Unauthenticated:
        self.checks.labels(result).inc()
        # Garbage (no token, wrong shape) is only counted: logging it would let anyone flood the logs.
        level = logging.DEBUG if result in ("missing", "malformed") else logging.INFO
        log.log(level, "ci token refused", extra={"result": result, "token_prefix": prefix})
        return Unauthenticated(detail, token=row)

    def _check_state(self, row: TokenRow) -> None:
        if row.revoked_at is not None:
            raise self._refuse("revoked", REVOKED, row.token_prefix, row=row)
        if row.expires_at is not None and row.expires_at <= self.now():
            raise self._refuse(
                "expired",
                f"this CI token expired at {row.expires_at.isoformat()}; create a new one",
                row.token_prefix,
                row=row,
            )

    async def authenticate(self, token: str | None) -> TokenRow:
        """The token's row, or `Unauthenticated` saying what is wrong."""
        if token is None:
            raise self._refuse("missing", "send the component's CI token as 'Authorization: Bearer lfci_...'")
        if not well_formed(token):
            raise self._refuse(
                "malformed",
                "this is not a Landfall CI token (wrong prefix, length or checksum; check for typos)",
            )
        digest = token_hash(token)
        entry = self.cache.get(digest)
        if entry is None:
            ticket = self.cache.ticket()
            self.lookups.inc()
            row = await self.tokens.by_hash(digest)
            if row is None or not hmac.compare_digest(row.token_sha256, digest):
                raise self._refuse("unknown", "unknown CI token", token_prefix(token))
            self._check_state(row)
            entry = CachedToken(row, touched_at=float("-inf"))
            self.cache.put(digest, entry, ticket)
            result = "ok"
        else:
            self._check_state(entry.row)
            result = "ok_cached"
        if self.clock() - entry.touched_at >= self.touch_interval:
            entry.touched_at = self.clock()
            state = await self.tokens.touch(entry.row.id, min_interval=timedelta(seconds=self.touch_interval))
            if state is None or state[0] is not None:
                self.revoked(entry.row.id)
                raise self._refuse("revoked", REVOKED, entry.row.token_prefix, row=entry.row)
        self.checks.labels(result).inc()
        return entry.row


@dataclass(kw_only=True)
class CiAccess:
    """Who may call the CI endpoints: a valid token that has not spent its rate limit."""

    broadcasts: Broadcasts
    auth: TokenAuthenticator
    limiter: RateLimiter

    async def admit(self, presented: str | None) -> TokenRow:
        """The token's row; `Unauthenticated`, or `RateLimited` once it sent too many requests."""
        if presented is not None and well_formed(presented):  # garbage costs no round trip
            await self.broadcasts.sync()
        token = await self.auth.authenticate(presented)
        wait = self.limiter.take(token.id)
        if wait is not None:
            log.info(
                "rate limited", extra={"token_prefix": token.token_prefix, "component": str(token.binding)}
            )
            raise RateLimited(wait, rate=self.limiter.rate)
        return token
