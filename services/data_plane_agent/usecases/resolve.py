"""Tag -> digest from inside the cluster, for registries the control plane cannot reach.

The orchestrator asks this agent (`ResolveInCluster`, core request-reply) when its own lookup
through the credentials service keeps failing: a registry inside the customer's network, or one
only the cluster's identity may read. The agent asks the registry the way the credentials service
would (`libs.oci.registry`, the same client), with the pull secret sealed to its key, opened here
and never kept, logged or sent back: the answer is a `ResolvedImage` (status, digest, a detail of
hosts and HTTP statuses only, as the client words it).

What is subtle:

* A request names the data plane it is for; one for another data plane is refused (a subject
  is this agent's, but the message is checked too, as commands are).
* Every request is bounded (`timeout_seconds` for the whole lookup, token dance included), so
  an unreachable registry answers `unreachable` in seconds, never holds the orchestrator.
* Which addresses a lookup may reach is the same `EgressPolicy` as the control plane's, with
  another default: from inside the cluster, private ranges are what registries usually live on
  (`Settings.registry_private_hosts`), link-local addresses (cloud metadata) are not listed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

from libs.contracts import reasons
from libs.contracts.messages import ResolvedImage, ResolveInCluster
from libs.oci.dockerconfig import DockerConfigError, parse_docker_config
from libs.oci.reference import InvalidReference, parse_reference
from libs.oci.registry.auth import AuthFlow
from libs.oci.registry.client import RegistryClient, close_session, new_session
from libs.oci.registry.egress import EgressPolicy
from libs.oci.registry.types import Credentials

from ..domain.identity import Identity, SealedSecretError

log = logging.getLogger(__name__)

USER_AGENT = "landfall-agent/0.1"


class WrongDataplane(Exception):
    """The request is for another data plane: refused without a lookup."""


@dataclass(kw_only=True)
class InClusterResolver:
    identity: Identity
    insecure: list[str]
    policy: EgressPolicy = field(default_factory=EgressPolicy)
    timeout_seconds: float = 5.0
    _client: RegistryClient | None = field(default=None, init=False)

    async def start(self) -> None:
        session = new_session(timeout=self.timeout_seconds, policy=self.policy, user_agent=USER_AGENT)
        self._client = RegistryClient(AuthFlow(session, insecure=self.insecure, policy=self.policy))

    async def stop(self) -> None:
        if self._client is not None:
            await close_session(self._client.flow.session)
            self._client = None

    async def resolve(self, request: ResolveInCluster) -> ResolvedImage:
        if request.dataplane_id != self.identity.dataplane_id:
            raise WrongDataplane(
                f"the request is for data plane {request.dataplane_id}, not this one"
                f" ({self.identity.dataplane_id})"
            )
        assert self._client is not None, "start() first"
        try:
            ref = parse_reference(request.image)
        except InvalidReference as exc:
            return ResolvedImage(status="not_found", detail=f"not a valid image reference: {exc.reason}")
        if ref.digest is not None:
            return ResolvedImage(status="resolved", digest=ref.digest, detail=f"{ref} is pinned")
        try:
            credentials = self._credentials(request, ref.host)
        except SealedSecretError as exc:
            return ResolvedImage(status="unauthorized", detail=exc.message)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                answer = await self._client.resolve(
                    ref.host, credentials, ref.repository, ref.tag or "latest"
                )
        except TimeoutError:
            answer = ResolvedImage(
                status="unreachable",
                detail=f"unreachable: {ref.host} did not answer within {self.timeout_seconds:g} s"
                " (asked from the cluster)",
            )
        log.info(
            "resolved in the cluster",
            extra={"image": ref.name, "status": answer.status, "dataplane_id": self.identity.dataplane_id},
        )
        return answer

    def _credentials(self, request: ResolveInCluster, host: str) -> Credentials | None:
        """The login in the sealed pull secret (None: anonymous). Opened here, kept nowhere."""
        if request.pull_secret is None:
            return None
        opened = self.identity.open(request.pull_secret)
        try:
            auth = parse_docker_config(json.loads(opened))
        except (ValueError, DockerConfigError):
            raise SealedSecretError(
                reasons.PULL_SECRET_UNREADABLE, "the sealed pull secret is no Docker config"
            ) from None
        finally:
            del opened
        if auth.host != host:
            log.warning("the pull secret is for another host", extra={"given": auth.host, "image_host": host})
        return Credentials(auth.username, auth.password)
