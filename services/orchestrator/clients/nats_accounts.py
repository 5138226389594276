"""The NATS account as the orchestrator changes it: revoking agent identities at once.

A user JWT cannot be taken back: nats-server accepts it until its `exp`. What the server does honour
is the account JWT's `revocations` (user public key -> unix time: that user's JWTs issued at or
before it are refused, and connections using one are closed at once). So revoking an agent (its data
plane re-enrolled or deleted) is: re-sign the application account's JWT with every revocation in
our database, then push it with `$SYS.REQ.CLAIMS.UPDATE`, which the account resolver (`resolver:
full`, libs/runtime/natsauth.py) takes, stores in its directory and passes to every server of a
cluster.

What that needs, and why it is its own connection:

* the operator's signing key (`LANDFALL_NATS_OPERATOR_SIGNING_SEED`): only the operator signs
  account JWTs. With it the orchestrator could sign any account; it already mints every agent's
  user, so it is the party that holds identities anyway (INSTALL.md says where the key lives);
* a system-account user (`LANDFALL_NATS_SYSTEM_CREDS_FILE`) that may publish only the two
  claims-update subjects: the application account's users cannot reach `$SYS`.

What is subtle:

* The JWT pushed must equal the preloaded one but for `revocations` and `iat`:
  `natsauth.app_account_jwt` is the one definition both use.
* nats-server takes the last JWT pushed (even one with an older `iat`), while its resolver
  directory keeps the newest by `iat`. So with several replicas, pushes must be one after the other,
  each reading the revocations after the one before, with a growing `iat`: the use case claims
  the `iat` from PostgreSQL (`nats_account_pushes`, whose row lock serializes the pushes) in the
  transaction that reads the revocations, and pushes before it commits.
* The database is where revocations live: the orchestrator pushes them at every start, so a
  nats-server that lost its resolver directory, or a stack started again with a preloaded JWT, has
  them back as soon as the orchestrator runs. A push that fails (NATS down) is logged and retried
  at the next revocation or start; the enrollment or deletion that asked for it still answers.
* In a cluster every server answers the request; the first answer is enough (the servers share
  the update among themselves over the system account).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS

from libs.runtime import bus as busmod
from libs.runtime.bus import BusUnavailable
from libs.runtime.natsauth import NKey, app_account_jwt
from libs.runtime.settings import ServiceSettings

CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"


@dataclass(kw_only=True, eq=False)
class AccountPublisher:
    """Re-signs the application account with its revocations and pushes it to nats-server."""

    settings: ServiceSettings
    operator_signer: NKey = field(repr=False)
    account: str
    account_signing_keys: tuple[str, ...]
    clock: Callable[[], float] = time.time
    timeout_seconds: float = 2.0
    _nc: NATS | None = field(init=False, default=None)
    _last_iat: int = field(init=False, default=0)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def account_jwt(self, revocations: Mapping[str, int], *, issued_at: int | None = None) -> str:
        iat = max(int(self.clock()) if issued_at is None else issued_at, self._last_iat + 1)
        self._last_iat = iat
        return app_account_jwt(
            self.account,
            operator_signer=self.operator_signer,
            signing_keys=self.account_signing_keys,
            revocations=revocations,
            issued_at=iat,
        )

    async def push(self, revocations: Mapping[str, int], *, issued_at: int | None = None) -> None:
        """Push the account with `revocations` (its `iat`: `issued_at`, else the clock, never below the
        last one from here); `BusUnavailable` when no server took it."""
        async with self._lock:
            jwt = self.account_jwt(revocations, issued_at=issued_at)
            nc = await self._connection()
            try:
                reply = await nc.request(CLAIMS_UPDATE, jwt.encode(), timeout=self.timeout_seconds)
            except Exception as exc:  # timeout, no responders, connection lost
                raise BusUnavailable(f"nats-server did not take the account update: {exc!r}") from exc
            try:
                answer = json.loads(reply.data)
            except ValueError:
                answer = {}
            data = answer.get("data") if isinstance(answer, dict) else None
            error = answer.get("error") if isinstance(answer, dict) else None
            if not isinstance(data, dict) or data.get("code") != 200:
                raise BusUnavailable(f"nats-server refused the account update: {error or answer}")

    async def _connection(self) -> NATS:
        if self._nc is None or self._nc.is_closed:
            self._nc = await busmod.connect(
                self.settings, name="orchestrator-claims", wait_seconds=self.timeout_seconds
            )
        return self._nc

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None
