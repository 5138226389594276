"""Resolution: the digest a deployment's tag points to, asked of the control plane first and, when
that cannot reach the registry, of the data plane's agent, inside the cluster that pulls the image.

No deployment stays `pending` because a registry does not answer (API.md, "Images the control
plane cannot reach"): within `unreachable_seconds` (90 s by default) of being recorded it is
pinned, or it fails with `registry_unreachable` and a message saying what was tried.

What is subtle:

* For a private data plane the control plane often cannot reach the registry at all (a registry
  inside the customer's network, or one the credentials service's egress policy refuses), while
  the cluster can. So for a first while (`in_cluster_after`: a third of the bound, at most 20 s)
  only the credentials service is asked, with a short backoff (a registry that blinked); after
  that every attempt asks it and then, if it still could not reach the registry, the agent
  (`ResolveInCluster`, with the registry's pull secret sealed to that data plane, as a deploy
  command carries it). What the agent resolves is pinned like any other digest, with a note.
* A credentials service that does not answer in time counts as "the control plane could not
  resolve it": it may well be waiting on a registry that hangs (its registry timeout is longer
  than our RPC timeout), and the bound is about the outcome a user sees, not whose fault it is.
* The bound holds because no deferral reaches past it, and an attempt that would end past the
  deadline fails now: the next one would take about as long as this one did, plus one sweep.
  The age is the database's `recorded_at` against this process's clock (one host's NTP apart).
* Final answers stay final from either side: `not_found` is `image_not_found`, `unauthorized`
  `registry_unauthorized`, as they always were from the control plane. Vendor registries
  (`skipped`) deploy by tag; the agent then reports the digest the cluster pulled.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from libs.contracts import reasons
from libs.contracts.messages import ResolvedImage, ResolveInCluster, SealedSecret, utcnow
from libs.oci.reference import ImageReference, InvalidReference, parse_reference, validate_digest
from libs.runtime.bus import BusUnavailable
from libs.runtime.errors import DependencyUnavailable, Stalling, Waiting
from services.orchestrator.clients.agents import Agents
from services.orchestrator.clients.credentials import NO_PULL_SECRET, Credentials
from services.orchestrator.domain.records import Component, DataPlane, Deployment
from services.orchestrator.domain.rules import retry_delay
from services.orchestrator.store import Store

log = logging.getLogger(__name__)

REGISTRY_GONE: Final = "the component's registry no longer exists"
NOTE_IN_CLUSTER: Final = "resolved inside the data plane"
IN_CLUSTER_AFTER_MAX: Final = 20.0
AGENT_TIMEOUT_MAX: Final = 5.0


@dataclass(frozen=True, slots=True)
class Pinned:
    """The image to send (by digest, or by tag for vendor registries) and a note for its history."""

    image: str
    note: str | None = None


@dataclass(kw_only=True, eq=False)
class Resolution:
    store: Store
    credentials: Credentials
    agents: Agents
    retry_seconds: float
    max_retry_seconds: float
    unreachable_seconds: float = 90.0

    @property
    def in_cluster_after(self) -> float:
        return min(IN_CLUSTER_AFTER_MAX, self.unreachable_seconds / 3)

    @property
    def agent_timeout(self) -> float:
        return min(AGENT_TIMEOUT_MAX, max(self.unreachable_seconds / 6, 0.5))

    async def pin(self, deployment: Deployment, component: Component, plane: DataPlane) -> Pinned:
        """The image to run; `Waiting` while neither side could resolve the tag and time is left,
        `Stalling` when one says it cannot exist (or be read) or when time is up."""
        reference = parse_reference(deployment.image)
        digest = reference.digest or deployment.digest
        if digest is not None:
            return Pinned(f"{reference.name}@{digest}")
        started = time.monotonic()
        tag = reference.tag or "latest"
        waiting_reason = reasons.REGISTRY_UNREACHABLE
        try:
            resolved = await self.credentials.resolve(
                org=component.org,
                registry_id=component.registry_id,
                repository=reference.repository,
                reference=tag,
            )
        except DependencyUnavailable as exc:
            waiting_reason = reasons.CREDENTIALS_UNAVAILABLE
            resolved = ResolvedImage(
                status="unreachable", detail=f"the credentials service did not answer ({exc})"
            )
        if resolved is None:
            raise Stalling(reasons.REGISTRY_NOT_FOUND, REGISTRY_GONE)
        pinned = await self._final(deployment, reference, resolved, side="")
        if pinned is not None:
            return pinned
        tried = [
            f"control plane: {deployment.attempts + 1} attempt(s), the last one: "
            f"{_error(resolved, 'the registry did not answer')}"
        ]
        if self._age(deployment) >= self.in_cluster_after:
            found = await self._in_cluster(deployment, component, plane, reference, tag)
            if isinstance(found, Pinned):
                return found
            tried.append(f"data plane {plane.id}: {found}")
        age, elapsed = self._age(deployment), time.monotonic() - started
        # the next attempt must end before the deadline: it takes about as long as this one did
        left = self.unreachable_seconds - age - elapsed - self.retry_seconds
        if left <= 0:
            message = "; ".join(tried)
            log.info("registry unreachable", extra={"deployment_id": deployment.id, "tried": message})
            raise Stalling(reasons.REGISTRY_UNREACHABLE, message[:1000])
        until_agent = self.in_cluster_after - age
        delay = (
            self.retry_seconds  # our own service: back soon, as for any other outage of it
            if waiting_reason == reasons.CREDENTIALS_UNAVAILABLE
            else retry_delay(deployment.attempts, base=self.retry_seconds, cap=self.max_retry_seconds)
        )
        delay = min(delay, left)
        if until_agent > 0:
            delay = min(delay, until_agent)
        raise Waiting(waiting_reason, delay)

    async def _final(
        self, deployment: Deployment, reference: ImageReference, resolved: ResolvedImage, *, side: str
    ) -> Pinned | None:
        """A resolved digest pinned, a tag deploy, or a final refusal; None: could not be resolved."""
        if resolved.status == "resolved":
            try:
                digest = validate_digest(resolved.digest or "")
            except InvalidReference:
                return None
            await self.store.now.deployments.set_digest(deployment.id, digest)
            return Pinned(f"{reference.name}@{digest}", note=NOTE_IN_CLUSTER if side else None)
        if resolved.status == "skipped":
            return Pinned(str(reference))
        if resolved.status == "not_found":
            detail = resolved.detail or f"{reference} does not exist in the registry"
            raise Stalling(reasons.IMAGE_NOT_FOUND, side + detail)
        if resolved.status == "unauthorized":
            detail = resolved.detail or "the registry refused the credentials"
            raise Stalling(reasons.REGISTRY_UNAUTHORIZED, side + detail)
        return None

    async def _in_cluster(
        self,
        deployment: Deployment,
        component: Component,
        plane: DataPlane,
        reference: ImageReference,
        tag: str,
    ) -> Pinned | str:
        """The agent's answer pinned (or final), or what went wrong in words."""
        if plane.public_key is None:
            return "not asked: its agent is not enrolled yet"
        try:
            pull_secret = await self._pull_secret(component, plane)
        except DependencyUnavailable as exc:
            return f"not asked: the pull secret could not be sealed ({exc})"
        request = ResolveInCluster(
            dataplane_id=plane.id, image=f"{reference.name}:{tag}", pull_secret=pull_secret
        )
        try:
            answer = await self.agents.resolve_in_cluster(request, timeout=self.agent_timeout)
        except BusUnavailable as exc:
            return f"its agent gave no answer ({exc})"
        log.info(
            "resolved in the data plane",
            extra={"deployment_id": deployment.id, "dataplane_id": plane.id, "status": answer.status},
        )
        pinned = await self._final(deployment, reference, answer, side=f"data plane {plane.id}: ")
        return pinned if pinned is not None else _error(answer, "the registry did not answer there either")

    async def _pull_secret(self, component: Component, plane: DataPlane) -> SealedSecret | None:
        auth_type = await self.credentials.auth_type(org=component.org, registry_id=component.registry_id)
        if auth_type is None or auth_type in NO_PULL_SECRET:
            return None
        assert plane.public_key is not None
        reply = await self.credentials.pull_secret(
            org=component.org,
            registry_id=component.registry_id,
            dataplane_id=plane.id,
            public_key=plane.public_key,
        )
        return reply.sealed if reply is not None else None

    @staticmethod
    def _age(deployment: Deployment) -> float:
        return (utcnow() - deployment.recorded_at).total_seconds()


def _error(resolved: ResolvedImage, fallback: str) -> str:
    if resolved.status == "resolved":
        return f"an invalid digest {str(resolved.digest)[:80]!r}"
    return resolved.detail[:300] or fallback
