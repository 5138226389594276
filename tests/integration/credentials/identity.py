"""The orchestrator's part in identity, faked for one-service tests: org API keys and the audit tap.

`FakeKeys` answers `rpc_apikey_lookup` on the real NATS as the orchestrator (which
owns the keys) would, from keys a test makes with `add`, and revokes one the way
the orchestrator does: the look-up says `revoked` from then on and `ApiKeyRevoked`
is broadcast to every replica. `AuditTap` collects every `AuditEvent` the service
under test publishes to the AUDIT stream's subjects. Both are used by the
credentials and the webhook-gateway tests (the gateway's import them from here).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.contracts.identity import ApiKeyInfo, ApiKeyLookup, ApiKeyRevoked, AuditEvent, Role
from libs.contracts.ids import new_id
from libs.contracts.tokens import API_KEY, token_hash, token_prefix
from libs.runtime.bus import Bus, RpcHandlerError
from tests.support import bearer


@dataclass
class FakeKeys:
    bus: Bus
    by_digest: dict[str, ApiKeyInfo] = field(default_factory=dict)
    lookups: int = 0

    async def start(self) -> None:
        async def lookup(req: ApiKeyLookup) -> ApiKeyInfo:
            self.lookups += 1
            info = self.by_digest.get(req.key_sha256)
            if info is None:
                raise RpcHandlerError("not_found", "no such key")
            return info

        await self.bus.serve(self.bus.subjects.rpc_apikey_lookup, ApiKeyLookup, lookup, queue="orchestrator")
        await self.bus.nc.flush()

    def add(self, org: str, role: Role, *, name: str | None = None, expired: bool = False) -> str:
        """A new key of `org` with `role` (already expired with `expired`): the key itself."""
        key = API_KEY.generate()
        self.by_digest[token_hash(key).hex()] = ApiKeyInfo(
            id=new_id("key"),
            org=org,
            name=name or f"{role} of {org}",
            role=role,
            key_prefix=token_prefix(key),
            expires_at=datetime.now(UTC) - timedelta(minutes=1) if expired else None,
        )
        return key

    def info(self, key: str) -> ApiKeyInfo:
        return self.by_digest[token_hash(key).hex()]

    def headers(self, org: str, role: Role) -> dict[str, str]:
        return bearer(self.add(org, role))

    async def revoke(self, key: str) -> None:
        """As the orchestrator's DELETE does: revoked from now on, and every replica told at once."""
        digest = token_hash(key).hex()
        info = self.by_digest[digest].model_copy(update={"revoked": True})
        self.by_digest[digest] = info
        await self.bus.publish(self.bus.subjects.apikeys_revoked, ApiKeyRevoked(key_id=info.id, org=info.org))
        await self.bus.nc.flush()


@dataclass
class AuditTap:
    bus: Bus
    events: list[AuditEvent] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    _sub: Subscription | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        async def on_event(msg: Msg) -> None:
            self.raw.append(msg.data)
            self.events.append(AuditEvent.model_validate_json(msg.data))
            self._arrived.set()

        self._sub = await self.bus.nc.subscribe(self.bus.subjects.all_audit, cb=on_event)
        await self.bus.nc.flush()

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> list[AuditEvent]:
        """The events so far, once there are at least `count` of them."""
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events

    async def quiet(self, seconds: float = 0.3) -> list[AuditEvent]:
        """The events once none has arrived for `seconds` (to assert that something was *not* audited)."""
        while True:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), seconds)
            except TimeoutError:
                return self.events

    def of(self, action: str) -> list[AuditEvent]:
        return [e for e in self.events if e.action == action]
