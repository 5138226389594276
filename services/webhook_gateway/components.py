"""What the gateway knows about components: the orchestrator's `ComponentInfo` and signing state.

Both are cached per replica because every webhook needs them and they change
rarely. The orchestrator broadcasts `ComponentChanged` when a component changes
or goes away (and the gateway itself does when a signing secret changes); each
replica then drops that component's entries. As with tokens, the cache is
bypassed while NATS is disconnected and emptied after a reconnect (a missed
broadcast must not pin stale data); a generous max age is only a backstop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from libs.contracts.messages import ComponentGet, ComponentInfo
from libs.runtime.bus import Bus, BusUnavailable, RpcFailed
from libs.runtime.errors import ProblemError
from services.webhook_gateway.auth import unauthorized
from services.webhook_gateway.model import Binding
from services.webhook_gateway.repository import Repository
from services.webhook_gateway.signatures import secret_key
from services.webhook_gateway.vault import SigningSecretStore

log = logging.getLogger(__name__)


class ComponentMissing(Exception):
    """The orchestrator does not know the component (deleted, or never existed)."""


@dataclass(frozen=True, slots=True)
class SigningState:
    required: bool
    key: bytes | None = None


class ComponentDirectory:
    def __init__(
        self,
        bus: Bus,
        repo: Repository,
        secrets: SigningSecretStore,
        *,
        max_age: float,
        epoch: Callable[[], int | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.repo = repo
        self.secrets = secrets
        self.max_age = max_age
        self.epoch = epoch
        self.clock = clock
        self._infos: dict[Binding, tuple[ComponentInfo, float]] = {}
        self._signing: dict[Binding, tuple[SigningState, float]] = {}
        self._epoch: int | None = None
        self._generation = 0

    def forget(self, binding: Binding) -> None:
        self._generation += 1
        self._infos.pop(binding, None)
        self._signing.pop(binding, None)

    def clear(self) -> None:
        self._generation += 1
        self._infos.clear()
        self._signing.clear()

    def _usable(self) -> bool:
        epoch = self.epoch()
        if epoch != self._epoch:
            self.clear()
            self._epoch = epoch
        return epoch is not None

    async def info(self, binding: Binding) -> ComponentInfo:
        use_cache = self._usable()
        cached = self._infos.get(binding) if use_cache else None
        if cached is not None and self.clock() - cached[1] < self.max_age:
            return cached[0]
        generation = self._generation
        try:
            info = await self.bus.request(
                self.bus.subjects.rpc_component_get,
                ComponentGet(org=binding.org, project=binding.project, component=binding.component),
                ComponentInfo,
            )
        except RpcFailed as exc:
            if exc.error.code == "not_found":
                self._infos.pop(binding, None)
                raise ComponentMissing(str(binding)) from None
            raise BusUnavailable(f"the orchestrator could not answer: {exc.error.code}") from None
        if use_cache and generation == self._generation:
            self._infos[binding] = (info, self.clock())
        return info

    async def signing(self, binding: Binding, info: ComponentInfo) -> SigningState:
        """Whether the component requires signatures and, if so, its HMAC key."""
        use_cache = self._usable()
        cached = self._signing.get(binding) if use_cache else None
        if cached is not None and self.clock() - cached[1] < self.max_age:
            state = cached[0]
        else:
            generation = self._generation
            required = info.require_signature or (await self.repo.signing_required(binding)) is not None
            key = None
            if required:
                secret = await self.secrets.get(binding)
                key = secret_key(secret) if secret is not None else None
            state = SigningState(required=required, key=key)
            if use_cache and generation == self._generation:
                self._signing[binding] = (state, self.clock())
        if state.required and state.key is None:
            raise unauthorized(
                "this component requires signed requests but has no signing secret; "
                "an admin must create one (POST .../signing-secret)"
            )
        return state


def component_missing_problem(binding: Binding) -> ProblemError:
    return ProblemError(
        403,
        "Forbidden",
        f"component {binding} no longer exists (a component created again under its name is another one);"
        " its CI tokens cannot deploy: create a token for the current component",
        kind="forbidden",
    )
