"""Request-reply handlers for the orchestrator (queue group "credentials").

Thin like the HTTP handlers: decode (done by `Bus.serve`), look the registry
up in the caller's org, call `Registries`, answer. A registry of another org is
`not_found`, exactly like one that does not exist. A dependency outage is the
typed error `unavailable`, which the orchestrator retries.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from libs.contracts.messages import (
    PullSecretReply,
    PullSecretRequest,
    RegistryGet,
    RegistryInfo,
    ResolvedImage,
    ResolveImage,
)
from libs.runtime.bus import Bus, RpcHandlerError
from libs.runtime.errors import DependencyUnavailable
from services.credentials.registries import Registries, RegistryBroken
from services.credentials.repository import RegistryRow
from services.credentials.sealing import BadPublicKey

QUEUE = "credentials"
T = TypeVar("T")


async def _available(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except DependencyUnavailable as exc:
        raise RpcHandlerError("unavailable", str(exc)) from None


async def serve(bus: Bus, registries: Registries) -> None:
    async def row_of(org: str, registry_id: str) -> RegistryRow:
        row = await _available(registries.find(org, registry_id))
        if row is None:
            raise RpcHandlerError("not_found", "no such registry in this org")
        return row

    async def registry_get(req: RegistryGet) -> RegistryInfo:
        return registries.info(await row_of(req.org, req.registry_id))

    async def resolve_image(req: ResolveImage) -> ResolvedImage:
        row = await row_of(req.org, req.registry_id)
        return await _available(registries.resolve(row, req.repository, req.reference))

    async def pull_secret(req: PullSecretRequest) -> PullSecretReply:
        row = await row_of(req.org, req.registry_id)
        try:
            return await _available(registries.pull_secret(row, req.recipient_public_key))
        except BadPublicKey as exc:
            raise RpcHandlerError("invalid", str(exc)) from None
        except RegistryBroken as exc:
            raise RpcHandlerError("unavailable", str(exc)) from None

    await bus.serve(bus.subjects.rpc_registry_get, RegistryGet, registry_get, queue=QUEUE)
    await bus.serve(bus.subjects.rpc_resolve_image, ResolveImage, resolve_image, queue=QUEUE)
    await bus.serve(bus.subjects.rpc_pull_secret, PullSecretRequest, pull_secret, queue=QUEUE)
    await bus.nc.flush(timeout=5)
