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
* An agent's NATS user JWT expires (`Agents` mints it with `LANDFALL_AGENT_JWT_TTL_SECONDS`); the
  agent renews it before then (`renew`, over NATS): it signs the request with the nkeys user key it
  enrolled with (its sealing key is X25519, which cannot sign), and we answer a new JWT for that
  same key only while it is still the plane's key. `issued_at` must be within `renewal_skew_seconds`
  of our clock (an injectable `clock`), so a captured request cannot be replayed later.
* Re-enrolling (a new user key) or deleting a plane revokes its old NATS user: the key is listed in
  `nats_revocations` in the same transaction, then the account JWT is pushed with every revocation
  (`clients/nats_accounts.py`); nats-server closes that user's connections and refuses new ones.
  A push that fails is retried at the next one, and at every start (`push_revocations`). Each push
  drops revocations older than the longest JWT lifetime allowed (`REVOCATION_KEPT_SECONDS`): what they
  revoked has expired, and the account JWT stays bounded by the revocations of the last 90 days.
* Deleting a plane an environment still uses answers 409 `dataplane_in_use` naming them: move or
  delete those environments first. Its deployments' history stays.
* Heartbeats arrive every few seconds from every agent: a plane's first one (and
  a new agent version) is written at once, later ones at most every
  `write_every` seconds, so `last_seen` lags by at most that plus the agents'
  interval (keep the sum below the freshness window).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from libs.contracts import reasons
from libs.contracts.ids import new_id
from libs.runtime.errors import Conflict, DependencyUnavailable, Invalid, NotFound
from libs.runtime.natsauth import is_user_public_key, verify_renewal
from libs.runtime.store import Duplicate
from services.orchestrator.clients.agents import Agents, NatsGrant
from services.orchestrator.clients.nats_accounts import AccountPublisher
from services.orchestrator.domain.records import DataPlane
from services.orchestrator.domain.rules import (
    REVOCATION_KEPT_SECONDS,
    EnrollmentRefused,
    check_public_key,
    new_enrollment_token,
    token_sha256,
)
from services.orchestrator.store import Store
from services.orchestrator.usecases.catalog import Catalog

log = logging.getLogger(__name__)


class DataPlaneInUse(Conflict):
    kind = reasons.DATAPLANE_IN_USE


@dataclass(kw_only=True, eq=False)
class DataPlanes:
    store: Store
    catalog: Catalog
    agents: Agents
    accounts: AccountPublisher | None = None  # None: agent identities cannot be revoked (logged at start)
    enrollment_token_ttl_seconds: float = 86400.0
    heartbeat_write_seconds: float = 0.0
    renewal_skew_seconds: float = 300.0
    clock: Callable[[], float] = time.time
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
        grant_key = nats_user_public_key if self.agents.issues_nats_users else None
        previous: str | None = None
        async with self.store.transaction() as tx:
            enrolled = await tx.dataplanes.enroll(
                token_sha256=sha, public_key=key, version=version, nats_user_public_key=grant_key
            )
            plane = enrolled[0] if enrolled is not None else None
            if enrolled is not None:
                plane, previous = enrolled
                await tx.deployments.due_now(plane.id)
                if previous is not None and previous != grant_key:
                    await tx.dataplanes.revoke_nats_user(user_public_key=previous, dataplane_id=plane.id)
        if pending is not None and plane is None and pending.enrollment_expires_at is not None:
            raise EnrollmentRefused(
                f"the enrollment token expired at {pending.enrollment_expires_at.isoformat()}; ask an admin"
                f" for a new one (POST /v1/orgs/{pending.org}/dataplanes/{pending.id}/enrollment-token)"
            )
        if pending is None or plane is None:
            raise EnrollmentRefused(
                "the enrollment token is unknown or was used already; ask an admin for a new one"
            )
        if previous is not None and previous != grant_key:
            await self.push_revocations()
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

    async def delete(self, org: str, dataplane_id: str) -> DataPlane:
        """Delete a plane no environment uses, and revoke its agent's NATS user at once."""
        await self.get(org, dataplane_id)
        async with self.store.transaction() as tx:
            using = await tx.dataplanes.environments_using(dataplane_id)
            if using:
                raise DataPlaneInUse(
                    f"environments use this data plane: {', '.join(using[:20])}; move them to another"
                    " data plane or delete them first"
                )
            plane = await tx.dataplanes.delete(org=org, dataplane_id=dataplane_id)
            if plane is None:
                raise NotFound(f"data plane {dataplane_id[:40]!r}")
            if plane.nats_user_public_key is not None:
                await tx.dataplanes.revoke_nats_user(
                    user_public_key=plane.nats_user_public_key, dataplane_id=plane.id
                )
        if plane.nats_user_public_key is not None:
            await self.push_revocations()
        await self.agents.drop_consumer(plane.id)
        log.info("data plane deleted", extra={"dataplane_id": plane.id, "org": org})
        return plane

    async def renew(
        self, *, dataplane_id: str, user_public_key: str, issued_at: int, signature: str
    ) -> NatsGrant:
        """A new JWT for the plane's enrolled NATS user key, for an agent that proves it holds it.
        Every refusal looks the same to the caller (`NotFound`: no such enrolled key for that plane),
        so there is nothing to learn by probing; a stale or future `issued_at` is `Invalid`."""
        refused = NotFound(
            "an enrolled NATS user",
            detail="this key may not renew a NATS user for that data plane; enroll again",
        )
        if abs(self.clock() - issued_at) > self.renewal_skew_seconds:
            raise Invalid(
                "issued_at",
                f"more than {self.renewal_skew_seconds:.0f} s from the orchestrator's clock;"
                " check the agent's clock",
            )
        if not verify_renewal(dataplane_id, user_public_key, issued_at, signature):
            raise refused
        plane = await self.store.now.dataplanes.get(dataplane_id)
        if (
            plane is None
            or plane.nats_user_public_key is None
            or plane.nats_user_public_key != user_public_key
        ):
            raise refused
        grant = self.agents.nats_user(plane.id, user_public_key)
        if grant is None:
            raise refused
        log.info("agent NATS user renewed", extra={"dataplane_id": plane.id, "expires_at": grant.expires_at})
        return grant

    async def push_revocations(self) -> bool:
        """Push the account JWT with every revocation (at start, and after each revocation). One push
        at a time across replicas, each with every revocation committed before it and a greater `iat`
        (`claim_push` locks); a failure is logged and waits for the next push."""
        if self.accounts is None:
            return False
        try:
            async with self.store.transaction() as tx:
                issued_at = await tx.dataplanes.claim_push(int(self.clock()))
                forgotten = await tx.dataplanes.forget_revocations(older_than_seconds=REVOCATION_KEPT_SECONDS)
                revocations = await tx.dataplanes.nats_revocations()
                await self.accounts.push(revocations, issued_at=issued_at)
        except DependencyUnavailable as exc:  # NATS (BusUnavailable) or PostgreSQL
            log.warning(
                "NATS account not pushed: revocations wait for the next push", extra={"error": str(exc)}
            )
            return False
        log.info(
            "NATS account pushed",
            extra={
                "revocations": len(revocations),
                "expired_revocations_dropped": len(forgotten),
                "iat": issued_at,
            },
        )
        return True

    async def update_agent_consumers(self) -> int:
        """At start: every enrolled plane's consumer gets today's settings (one made by an older
        orchestrator kept `max_ack_pending` 1 until its plane enrolled again). Best effort: NATS or
        PostgreSQL away ends it, logged, and the next start does it; the number brought up to date."""
        done = 0
        try:
            enrolled = await self.store.now.dataplanes.enrolled_ids()
        except DependencyUnavailable as exc:
            log.warning("agent consumers not updated", extra={"error": str(exc)})
            return done
        for dataplane_id in enrolled:
            try:
                await self.agents.update_consumer(dataplane_id)
            except DependencyUnavailable as exc:
                log.warning("agent consumers not all updated", extra={"updated": done, "error": str(exc)})
                break
            except Exception as exc:  # JetStream refused this one's update: it works as it is
                log.warning(
                    "agent consumer not updated",
                    extra={"dataplane_id": dataplane_id, "error": repr(exc)[:300]},
                )
            else:
                done += 1
        return done

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
