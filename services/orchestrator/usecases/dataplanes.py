"""Data planes: registering one, enrolling its agent, and storing the agent's heartbeats.

What is subtle:

* A data plane's enrollment token is shown once and only its sha256 is kept; using
  it consumes it in the same UPDATE that stores the agent's public key, so two
  agents racing with one token cannot both enroll. Re-enrolling needs a new token.
* Enrollment first makes sure the agent's durable consumer exists (an agent with
  its own NATS user may only bind to it), and only then consumes the token: if
  NATS is down the answer is 503 and the same token works on the retry. An agent
  that sent an nkeys user key gets a NATS user JWT limited to its data plane.
  Deployments that waited for the plane's key are due at once (same transaction).
* Heartbeats arrive every few seconds from every agent: a plane's first one (and
  a new agent version) is written at once, later ones at most every
  `write_every` seconds, so `last_seen` lags by at most that plus the agents'
  interval (keep the sum below the freshness window).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from libs.contracts.ids import new_id
from libs.runtime.errors import Conflict, DependencyUnavailable, Invalid, NotFound
from libs.runtime.natsauth import is_user_public_key
from libs.runtime.store import Duplicate
from services.orchestrator.clients.agents import Agents, NatsGrant
from services.orchestrator.domain.records import DataPlane
from services.orchestrator.domain.rules import (
    EnrollmentRefused,
    check_public_key,
    new_enrollment_token,
    token_sha256,
)
from services.orchestrator.store import Store
from services.orchestrator.usecases.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class DataPlanes:
    store: Store
    catalog: Catalog
    agents: Agents
    enrollment_token_ttl_seconds: float = 86400.0
    heartbeat_write_seconds: float = 0.0
    # data plane -> (monotonic time written, version)
    _written: dict[str, tuple[float, str]] = field(init=False, default_factory=dict)

    async def create(self, org: str, *, name: str, ingress_class: str | None) -> tuple[DataPlane, str]:
        """A new data plane and its one-time enrollment token (returned once, stored hashed)."""
        await self.catalog.org(org)
        token = new_enrollment_token()
        try:
            plane = await self.store.now.dataplanes.create(
                id=new_id("dp"),
                org=org,
                name=name,
                ingress_class=ingress_class,
                token_sha256=token_sha256(token),
                token_ttl_seconds=self.enrollment_token_ttl_seconds,
            )
        except Duplicate:
            raise Conflict(f"a data plane named {name!r} exists already in this org") from None
        log.info("data plane created", extra={"dataplane_id": plane.id, "org": org})
        return plane, token

    async def of_org(self, org: str) -> list[DataPlane]:
        await self.catalog.org(org)
        return await self.store.now.dataplanes.of_org(org)

    async def get(self, org: str, dataplane_id: str) -> DataPlane:
        await self.catalog.org(org)
        plane = await self.catalog.dataplane_in(org, dataplane_id)
        if plane is None:
            raise NotFound(f"data plane {dataplane_id[:40]!r}")
        return plane

    async def new_enrollment_token(self, org: str, dataplane_id: str) -> tuple[DataPlane, str]:
        await self.get(org, dataplane_id)
        token = new_enrollment_token()
        plane = await self.store.now.dataplanes.set_enrollment_token(
            org=org,
            dataplane_id=dataplane_id,
            token_sha256=token_sha256(token),
            token_ttl_seconds=self.enrollment_token_ttl_seconds,
        )
        if plane is None:
            raise NotFound(f"data plane {dataplane_id!r}")
        log.info("enrollment token issued", extra={"dataplane_id": dataplane_id})
        return plane, token

    async def enroll(
        self, *, token: str, public_key: str, version: str, nats_user_public_key: str | None = None
    ) -> tuple[DataPlane, NatsGrant | None]:
        key = check_public_key(public_key)
        if nats_user_public_key is not None and not is_user_public_key(nats_user_public_key):
            raise Invalid("nats_user_public_key", "not an nkeys user public key (U...)")
        sha = token_sha256(token)
        pending = await self.store.now.dataplanes.by_enrollment_token(sha)
        if pending is not None:
            await self.agents.ensure_consumer(pending.id)
        async with self.store.transaction() as tx:
            plane = await tx.dataplanes.enroll(token_sha256=sha, public_key=key, version=version)
            if plane is not None:
                await tx.deployments.due_now(plane.id)
        if pending is not None and plane is None and pending.enrollment_expires_at is not None:
            raise EnrollmentRefused(
                f"the enrollment token expired at {pending.enrollment_expires_at.isoformat()}; ask an admin"
                f" for a new one (POST /v1/orgs/{pending.org}/dataplanes/{pending.id}/enrollment-token)"
            )
        if pending is None or plane is None:
            raise EnrollmentRefused(
                "the enrollment token is unknown or was used already; ask an admin for a new one"
            )
        grant = None
        if nats_user_public_key is not None:
            grant = self.agents.nats_user(plane.id, nats_user_public_key)
        elif self.agents.issues_nats_users:
            log.warning("agent enrolled without a NATS user key", extra={"dataplane_id": plane.id})
        log.info(
            "data plane enrolled",
            extra={"dataplane_id": plane.id, "version": version, "nats_user": grant is not None},
        )
        return plane, grant

    @property
    def command_keys(self) -> list[str]:
        """The public keys an enrolling agent pins (its enrollment answer's `command_keys`)."""
        return self.agents.command_keys

    async def heartbeat(self, *, dataplane_id: str, version: str) -> None:
        """Store the agent's heartbeat unless one with this version was written very recently."""
        now = time.monotonic()
        last = self._written.get(dataplane_id)
        if last is not None and last[1] == version and now - last[0] < self.heartbeat_write_seconds:
            return
        try:
            await self.store.now.dataplanes.record_heartbeat(dataplane_id=dataplane_id, version=version)
        except DependencyUnavailable as exc:
            log.warning("heartbeat not stored", extra={"dataplane_id": dataplane_id, "error": str(exc)})
            return
        self._written[dataplane_id] = (now, version)
