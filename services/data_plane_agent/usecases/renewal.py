"""Renewing the agent's NATS user JWT before it expires, over the bus (`rpc.AGENT_JWT_RENEW`).

The JWT minted at enrollment expires (the orchestrator's `LANDFALL_AGENT_JWT_TTL_SECONDS`, 24 h by
default), and nats-server closes a connection whose JWT expired. So, once two thirds of its
lifetime have passed, the agent asks for a new one for the same user key, signing the request with
that key's seed (which never leaves the agent); it saves the new JWT to agent.json (a restart uses
it) and reconnects at once with it (`RenewableUser` + `force_reconnect`), so the connection's own
expiry moves too.

What is subtle:

* When to renew is decided by `clock` (injectable), never by sleeping in tests: `due_in(now)`.
* A refused renewal (`not_found`: the plane was re-enrolled or deleted) is final: logged as an
  error, no retry storm; the agent keeps running until nats-server drops it. An unanswered one
  (orchestrator down) is retried every `retry_seconds` while the JWT still has time.
* A JWT without `exp` (minted before expiry existed) is never renewed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from libs.contracts import rpc
from libs.contracts.messages import AgentJwtRenew
from libs.runtime.bus import Bus, BusUnavailable, RpcFailed
from libs.runtime.natsauth import NatsAuthError, RenewableUser, jwt_lifetime, sign_renewal

from ..domain.identity import Identity
from ..store.state import load_state, save_state

log = logging.getLogger(__name__)

RENEW_AFTER = 2 / 3  # of the JWT's lifetime


class RenewalRefused(Exception):
    """The orchestrator will not renew this user (its plane was re-enrolled or deleted)."""


@dataclass(kw_only=True, eq=False)
class JwtRenewer:
    bus: Bus
    user: RenewableUser
    identity: Identity
    state_dir: Path | None = None  # where agent.json lives (None: not saved, e.g. settings identity)
    clock: Callable[[], float] = time.time
    retry_seconds: float = 30.0
    timeout_seconds: float = 5.0
    renewals: int = field(init=False, default=0)

    def left(self, now: float) -> float:
        """Seconds until the current JWT expires (infinity: never)."""
        _, exp = jwt_lifetime(self.user.current.jwt)
        return float("inf") if exp is None else exp - now

    def due_in(self, now: float) -> float | None:
        """Seconds until the current JWT should be renewed (0: now); None: it never expires."""
        iat, exp = jwt_lifetime(self.user.current.jwt)
        if exp is None:
            return None
        return max(0.0, iat + (exp - iat) * RENEW_AFTER - now)

    async def renew(self) -> None:
        """Ask for a new JWT, take it, save it and reconnect with it. `BusUnavailable` (retry later)
        or `RenewalRefused` (final)."""
        issued_at = int(self.clock())
        public_key, signature = sign_renewal(self.user.current.seed, self.identity.dataplane_id, issued_at)
        request = AgentJwtRenew(
            dataplane_id=self.identity.dataplane_id,
            user_public_key=public_key,
            issued_at=issued_at,
            signature=signature,
        )
        try:
            reply = await self.bus.ask(rpc.AGENT_JWT_RENEW, request, timeout=self.timeout_seconds)
        except RpcFailed as exc:
            if exc.error.code == "not_found":
                raise RenewalRefused(exc.error.message) from None
            raise BusUnavailable(f"the orchestrator answered {exc.error.code}") from exc
        try:
            current = self.user.replace(reply.jwt)
        except NatsAuthError as exc:
            raise BusUnavailable(f"the orchestrator answered an unusable JWT: {exc}") from None
        saved = load_state(self.state_dir) if self.state_dir is not None else None
        if self.state_dir is not None and saved is not None:  # agent.json as it was, with the new JWT
            save_state(self.state_dir, dataclasses.replace(saved, nats=current))
        self.renewals += 1
        log.info(
            "NATS user renewed",
            extra={"dataplane_id": self.identity.dataplane_id, "expires_at": reply.expires_at},
        )
        await self.bus.nc.force_reconnect()

    async def run(self) -> None:
        while True:
            wait = self.due_in(self.clock())
            if wait is None:
                return
            await asyncio.sleep(wait)
            try:
                await self.renew()
            except RenewalRefused as exc:
                log.error(
                    "the orchestrator refused to renew this agent's NATS user: enroll it again",
                    extra={"dataplane_id": self.identity.dataplane_id, "error": str(exc)},
                )
                return
            except BusUnavailable as exc:
                log.warning(
                    "NATS user not renewed yet; retrying",
                    extra={"dataplane_id": self.identity.dataplane_id, "error": str(exc)},
                )
                # never so late that the JWT expires between two tries
                await asyncio.sleep(min(self.retry_seconds, max(0.2, self.left(self.clock()) / 4)))
