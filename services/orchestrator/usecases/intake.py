"""Intake: what CI pushed (an `ImagePushed` the gateway stored on JetStream) becomes a deployment.

What is subtle:

* The event's deployment id is the row's id, so a redelivered event records
  nothing new; it is dispatched again only while its row is still pending (the
  first delivery may have stopped between recording and dispatching).
* An event this component could never run (no environment, another registry or
  repository) is recorded `failed` with its reason, so CI's long poll ends with it.
* Events of one component are handled one at a time in stream order (the
  consumer's key): the order in which they are recorded decides which one
  supersedes which, together with the gateway's `accepted_at`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from libs.contracts.messages import ImagePushed
from services.orchestrator.domain.records import NewDeployment
from services.orchestrator.domain.rules import checked_intake
from services.orchestrator.store import Store
from services.orchestrator.usecases.dispatch import Dispatcher
from services.orchestrator.usecases.recording import Recorder

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class Intake:
    store: Store
    recorder: Recorder
    dispatcher: Dispatcher

    async def intake(self, event: ImagePushed) -> bool:
        """Record (once) and dispatch what CI pushed; False when the component does not exist."""
        found = await self.store.now.components.with_environments(event.org, event.project, event.component)
        if found is None:
            return False
        component, environments = found
        new = checked_intake(
            NewDeployment(
                id=event.deployment_id,
                component=component,
                environment=environments[0] if environments else None,
                image=event.image,
                source="webhook",
                accepted_at=event.accepted_at,
                token_prefix=event.token_prefix,
                idempotency_key=event.idempotency_key,
            )
        )
        recorded = await self.recorder.record(new)
        if recorded is None:
            existing = await self.store.now.deployments.get(event.deployment_id)
            log.info(
                "intake event seen before",
                extra={"deployment_id": event.deployment_id, "status": existing.status if existing else None},
            )
            if existing is None or existing.status != "pending":
                return True
        await self.dispatcher.dispatch_soon(event.deployment_id)
        return True
