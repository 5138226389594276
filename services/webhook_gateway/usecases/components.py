"""What the gateway knows about components: the orchestrator's `ComponentInfo` and signing state.

Both are cached per replica because every webhook needs them and they change
rarely. The orchestrator broadcasts `ComponentChanged` when a component changes
or goes away (and the gateway itself does when a signing secret changes); each
replica then drops that component's entries. Both caches are `BroadcastCache`s
registered with the replica's `Broadcasts`: bypassed while NATS is disconnected,
emptied after a reconnect or a failed barrier (a missed broadcast must not pin
stale data), and a generous max age is only a backstop.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.contracts.messages import ComponentInfo
from libs.runtime.cache import BroadcastCache
from libs.runtime.errors import NotFound
from services.webhook_gateway.clients.orchestrator import Orchestrator
from services.webhook_gateway.domain.errors import Unauthenticated
from services.webhook_gateway.domain.records import Binding, SigningState
from services.webhook_gateway.domain.signatures import secret_key
from services.webhook_gateway.store import SigningSecrets, StoreUnit


@dataclass(kw_only=True)
class ComponentDirectory:
    orchestrator: Orchestrator
    uow: StoreUnit
    secrets: SigningSecrets
    infos: BroadcastCache[Binding, ComponentInfo]
    signing_states: BroadcastCache[Binding, SigningState]

    def forget(self, binding: Binding) -> None:
        self.infos.forget(binding)
        self.signing_states.forget(binding)

    async def find(self, binding: Binding) -> ComponentInfo | None:
        """The component, or None if the orchestrator does not know it (deleted, or never existed)."""
        info = self.infos.get(binding)
        if info is not None:
            return info
        ticket = self.infos.ticket()
        info = await self.orchestrator.component(binding)
        if info is None:
            self.infos.forget(binding)
            return None
        self.infos.put(binding, info, ticket)
        return info

    async def existing(self, binding: Binding) -> ComponentInfo:
        """The component, or `NotFound` (for the management endpoints, which name it in their path)."""
        info = await self.find(binding)
        if info is None:
            raise NotFound(f"component {binding}")
        return info

    async def signing(self, binding: Binding, info: ComponentInfo) -> SigningState:
        """Whether the component requires signatures and, if so, its HMAC key."""
        state = self.signing_states.get(binding)
        if state is None:
            ticket = self.signing_states.ticket()
            required = (
                info.require_signature or (await self.uow.now.signing.required_since(binding)) is not None
            )
            key = None
            if required:
                secret = await self.secrets.get(binding)
                key = secret_key(secret) if secret is not None else None
            state = SigningState(required=required, key=key)
            self.signing_states.put(binding, state, ticket)
        if state.required and state.key is None:
            raise Unauthenticated(
                "this component requires signed requests but has no signing secret; "
                "a developer of the org must create one (POST .../signing-secret)"
            )
        return state
