"""What other replicas and the orchestrator broadcast to every gateway replica (core NATS).

`TokenRevoked` (a replica revoked a CI token) and `ComponentChanged` (the
orchestrator changed or deleted a component, or a replica changed its signing
secret) make this replica forget the cached entries at once. How "at once" is
guaranteed for the next request is `libs/runtime/broadcasts.py`.
"""

from __future__ import annotations

from libs.contracts.messages import ComponentChanged, TokenRevoked
from services.webhook_gateway.domain.records import Binding
from services.webhook_gateway.usecases import Gateway


async def listen(gw: Gateway) -> None:
    """Subscribe, and return once the server has the subscriptions."""
    subjects = gw.bus.subjects

    def component_changed(changed: ComponentChanged) -> None:
        gw.directory.forget(Binding(changed.org, changed.project, changed.component))

    await gw.broadcasts.listen(subjects.tokens_revoked, TokenRevoked, lambda m: gw.auth.revoked(m.token_id))
    await gw.broadcasts.listen(subjects.components_changed, ComponentChanged, component_changed)
    await gw.broadcasts.ready()
