"""CI token authentication with a per-replica cache that revocation empties at once.

The hot path (a CI token already seen) costs no database round trip: validated
tokens are cached by their SHA-256. The cache is *not* time-based; it is kept
honest by events:
- a revocation drops the entry here and is broadcast (`TokenRevoked`) so every
  replica drops it too; before a CI request uses the cache, `api._sync_with_broadcasts`
  makes one NATS round trip, which guarantees that every broadcast published before
  the request arrived has been applied (so "revoked" means revoked for the very next
  request on any replica, not "soon");
- a revocation that raced with a database read cannot re-insert the token: the
  read only fills the cache if no revocation arrived meanwhile (generation count);
- a replica that lost its NATS connection may have missed broadcasts, so the
  cache is bypassed while disconnected and emptied after every reconnect;
- as a backstop, the once-a-minute `last_used_at` write re-reads `revoked_at`.

Lookups are by SHA-256 of the token (an index lookup on a hash reveals nothing
useful through timing), and the stored hash is compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from libs.runtime.errors import ProblemError
from services.webhook_gateway.model import TokenRow
from services.webhook_gateway.repository import Repository
from services.webhook_gateway.tokens import token_hash, token_prefix, well_formed

log = logging.getLogger(__name__)


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401,
        "Unauthorized",
        detail,
        kind="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="landfall", error="invalid_token"'},
    )


@dataclass
class _Cached:
    row: TokenRow
    touched_at: float


class TokenAuthenticator:
    def __init__(
        self,
        repo: Repository,
        *,
        touch_interval: float,
        epoch: Callable[[], int | None],
        checks: Counter,
        lookups: Counter,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_entries: int = 10_000,
    ) -> None:
        self.repo = repo
        self.touch_interval = touch_interval
        self.epoch = epoch
        self.checks = checks
        self.lookups = lookups
        self.clock = clock
        self.now = now
        self.max_entries = max_entries
        self._cache: dict[bytes, _Cached] = {}
        self._epoch: int | None = None
        self._generation = 0

    def revoked(self, token_id: str) -> None:
        """Forget a token now (called for local revocations and for `TokenRevoked` broadcasts)."""
        self._generation += 1
        for digest in [d for d, c in self._cache.items() if c.row.id == token_id]:
            del self._cache[digest]

    def clear(self) -> None:
        self._generation += 1
        self._cache.clear()

    def _refuse(self, result: str, detail: str, prefix: str | None = None) -> ProblemError:
        self.checks.labels(result).inc()
        # Garbage (no token, wrong shape) is only counted: logging it would let anyone flood the logs.
        level = logging.DEBUG if result in ("missing", "malformed") else logging.INFO
        log.log(level, "ci token refused", extra={"result": result, "token_prefix": prefix})
        return unauthorized(detail)

    def _check_state(self, row: TokenRow) -> None:
        if row.revoked_at is not None:
            raise self._refuse("revoked", "this CI token was revoked; create a new one", row.token_prefix)
        if row.expires_at is not None and row.expires_at <= self.now():
            raise self._refuse(
                "expired",
                f"this CI token expired at {row.expires_at.isoformat()}; create a new one",
                row.token_prefix,
            )

    async def authenticate(self, token: str | None) -> TokenRow:
        """The token's row, or a 401 problem saying what is wrong."""
        if token is None:
            raise self._refuse("missing", "send the component's CI token as 'Authorization: Bearer lfci_...'")
        if not well_formed(token):
            raise self._refuse(
                "malformed",
                "this is not a Landfall CI token (wrong prefix, length or checksum; check for typos)",
            )
        digest = token_hash(token)
        epoch = self.epoch()
        if epoch != self._epoch:
            self.clear()
            self._epoch = epoch
        entry = self._cache.get(digest) if epoch is not None else None
        if entry is None:
            generation = self._generation
            self.lookups.inc()
            row = await self.repo.token_by_hash(digest)
            if row is None or not hmac.compare_digest(row.token_sha256, digest):
                raise self._refuse("unknown", "unknown CI token", token_prefix(token))
            self._check_state(row)
            entry = _Cached(row, touched_at=float("-inf"))
            if epoch is not None and generation == self._generation:
                if len(self._cache) >= self.max_entries:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[digest] = entry
            result = "ok"
        else:
            self._check_state(entry.row)
            result = "ok_cached"
        if self.clock() - entry.touched_at >= self.touch_interval:
            entry.touched_at = self.clock()
            state = await self.repo.touch_token(
                entry.row.id, min_interval=timedelta(seconds=self.touch_interval)
            )
            if state is None or state[0] is not None:
                self.revoked(entry.row.id)
                raise self._refuse(
                    "revoked", "this CI token was revoked; create a new one", entry.row.token_prefix
                )
        self.checks.labels(result).inc()
        return entry.row
