"""The orchestrator, as the gateway sees it: components, deployments and their change notices.

`component` and `deployment` answer None for what the orchestrator does not
know; any other refusal, or no answer, is `BusUnavailable` (503 + Retry-After).
`changes(id)` subscribes to a deployment's `DeploymentChanged` notices: core
NATS, lossy by design, so callers ask `deployment` again when in doubt.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TypeVar

import nats.errors
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from libs.contracts import rpc
from libs.contracts.messages import (
    ComponentGet,
    ComponentInfo,
    DeploymentChanged,
    DeploymentGet,
    DeploymentView,
)
from libs.contracts.rpc import Rpc
from libs.runtime.bus import Bus, BusUnavailable, RpcFailed
from services.webhook_gateway.domain.records import Binding

log = logging.getLogger(__name__)

Q = TypeVar("Q", ComponentGet, DeploymentGet)
R = TypeVar("R", ComponentInfo, DeploymentView)


class DeploymentChanges:
    """The notices of one deployment, from the moment the subscription was made."""

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    async def next(self, timeout: float) -> DeploymentView | None:
        """The next notice (None for a malformed one); TimeoutError after `timeout` s without one,
        `BusUnavailable` when the connection closed."""
        try:
            msg = await self._sub.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            raise TimeoutError from None
        except nats.errors.Error as exc:
            raise BusUnavailable(f"notices stopped: {type(exc).__name__}") from None
        try:
            return DeploymentChanged.model_validate_json(msg.data).deployment
        except ValidationError:
            log.warning("ignored a malformed DeploymentChanged", extra={"subject": msg.subject})
            return None


class Orchestrator:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def _ask(self, call: Rpc[Q, R], message: Q) -> R | None:
        try:
            return await self.bus.ask(call, message)
        except RpcFailed as exc:
            if exc.error.code == "not_found":
                return None
            raise BusUnavailable(f"the orchestrator could not answer: {exc.error.code}") from None

    async def component(self, binding: Binding) -> ComponentInfo | None:
        org, project, component = binding.parts()
        return await self._ask(rpc.COMPONENT_GET, ComponentGet(org=org, project=project, component=component))

    async def deployment(self, deployment_id: str) -> DeploymentView | None:
        return await self._ask(rpc.DEPLOYMENT_GET, DeploymentGet(deployment_id=deployment_id))

    @contextlib.asynccontextmanager
    async def changes(self, deployment_id: str) -> AsyncIterator[DeploymentChanges]:
        """Subscribe before asking for the current view, so that no change falls between the two."""
        try:
            sub = await self.bus.nc.subscribe(self.bus.subjects.deployment_changed(deployment_id))
        except nats.errors.Error as exc:
            raise BusUnavailable(f"cannot subscribe: {type(exc).__name__}") from None
        try:
            yield DeploymentChanges(sub)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
