"""Sign-in with an org API key, and the server-side sessions it opens.

Why in memory: the console owns no data, and a session is only a handle on a key the person still
holds; after a restart they sign in again. Several console replicas would need sticky sessions (or
a shared store): the README says so.

What is subtle
--------------
* The key is checked by the API itself (`GET /v1/orgs/{org}`): 401 is a wrong, revoked or expired
  key; 404 is a key of another org (the API does not say which orgs exist, neither do we).
* The role comes from the org's key list (every role may read it) by the key's prefix, the only
  part of a key that lists show; the key itself never leaves this process except as a bearer
  header to the API.
* Expiry is checked on every use, with an injected clock (tests move it instead of sleeping), and
  expired sessions are swept whenever a new one is opened, so the store cannot grow without end.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from pydantic import SecretStr

from libs.contracts.identity import ROLES, Role
from libs.contracts.tokens import API_KEY, token_prefix
from services.console.clients.landfall import ApiProblem, Landfall
from services.console.domain import Session, SignInRefused, expired

Clock = Callable[[], float]


@dataclass
class SessionStore:
    ttl: float
    idle: float
    clock: Clock = time.monotonic
    _sessions: dict[str, Session] = field(default_factory=dict)

    def open(self, *, key: SecretStr, org: str, role: Role, key_name: str) -> Session:
        now = self.clock()
        for sid in [s.id for s in self._sessions.values() if self._expired(s, now)]:
            del self._sessions[sid]
        session = Session(
            id=secrets.token_urlsafe(32),
            key=key,
            org=org,
            role=role,
            key_name=key_name,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            last_used_at=now,
        )
        self._sessions[session.id] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session of this id (its idle timer restarts), or None."""
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self.clock()
        if self._expired(session, now):
            del self._sessions[sid]
            return None
        session.last_used_at = now
        return session

    def close(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return expired(session, now=now, ttl=self.ttl, idle=self.idle)


@dataclass
class SignIn:
    api: Landfall
    sessions: SessionStore

    async def __call__(self, *, key: str, org: str) -> Session:
        key = key.strip()
        if not API_KEY.well_formed(key):
            raise SignInRefused("that is not an org API key (they start with lfk_)")
        secret = SecretStr(key)
        try:
            await self.api.call("GET", f"/v1/orgs/{org}", key=secret)
            listed = await self.api.call("GET", f"/v1/orgs/{org}/api-keys", key=secret)
        except ApiProblem as exc:
            if exc.status == 401:
                raise SignInRefused("the key was refused: wrong, revoked or expired") from None
            if exc.status in (403, 404):
                raise SignInRefused(f"the key is not a key of org {org!r}") from None
            raise
        prefix = token_prefix(key)
        mine = next((k for k in listed.get("items", []) if k.get("key_prefix") == prefix), None)
        if mine is None or mine.get("role") not in ROLES:
            raise SignInRefused(f"the key is not a key of org {org!r}")
        return self.sessions.open(
            key=secret, org=org, role=cast(Role, mine["role"]), key_name=str(mine.get("name", ""))
        )
