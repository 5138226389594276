"""The orchestrator over NATS request-reply: which components use a registry; a data plane's key.

Asked before a registry is deleted (the orchestrator owns components; this
service never reads its tables). No answer, or an error answer, means "cannot
tell", which is `OrchestratorUnavailable` (503): deleting a registry that
components still pull from must not be possible by timing out.

A pull secret is sealed to the key the orchestrator enrolled for the data plane
(`dataplane_key`), never to one a requester names: the enrolled key is the
orchestrator's record, and only this service's NATS user may ask for it.
"""

from __future__ import annotations

from collections.abc import Set
from typing import TypeVar

from pydantic import BaseModel

from libs.contracts import rpc
from libs.contracts.messages import DataPlaneKeyGet, RegistryUsage
from libs.contracts.rpc import Rpc
from libs.runtime.bus import Bus, BusUnavailable, RpcFailed
from libs.runtime.errors import DependencyUnavailable

Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


class OrchestratorUnavailable(DependencyUnavailable):
    """The orchestrator could not say which components use a registry."""


class Orchestrator:
    def __init__(self, bus: Bus, *, timeout: float = 5.0) -> None:
        self.bus = bus
        self.timeout = timeout

    async def components_using(self, org: str, registry_id: str) -> list[str]:
        reply = await self._ask(
            rpc.REGISTRY_USAGE,
            RegistryUsage(org=org, registry_id=registry_id),
            unanswered="did not answer which components use this registry",
            failed="could not tell which components use this registry",
        )
        return list(reply.components)

    async def dataplane_key(self, org: str, dataplane_id: str) -> str | None:
        """The data plane's enrolled sealing key; None while none is enrolled or the plane is gone."""
        try:
            reply = await self._ask(
                rpc.DATAPLANE_KEY,
                DataPlaneKeyGet(org=org, dataplane_id=dataplane_id),
                unanswered="did not give the data plane's key",
                failed="could not give the data plane's key",
                passes={"not_found"},
            )
        except RpcFailed:  # not_found, the only code `_ask` lets through
            return None
        return reply.public_key

    async def _ask(
        self,
        call: Rpc[Q, R],
        message: Q,
        *,
        unanswered: str,
        failed: str,
        passes: Set[str] = frozenset(),
    ) -> R:
        """The orchestrator's answer; no answer or an error answer (but one of `passes`) is
        `OrchestratorUnavailable`, saying "the orchestrator <unanswered>" / "<failed> (code)"."""
        try:
            return await self.bus.ask(call, message, timeout=self.timeout)
        except BusUnavailable as exc:
            raise OrchestratorUnavailable(f"the orchestrator {unanswered}") from exc
        except RpcFailed as exc:
            if exc.error.code in passes:
                raise
            raise OrchestratorUnavailable(f"the orchestrator {failed} ({exc.error.code})") from exc
