"""Client of the credentials service (NATS request-reply): registries, digests, sealed secrets.

The orchestrator never sees a registry password: it asks the credentials service
for a registry's host, for the digest a tag points to, and for a pull secret
sealed to one data plane's public key, which it passes through untouched; an
environment's config secrets likewise (it wrote them to Vault, it cannot read them).

Errors are sorted into three kinds: "that registry does not exist" (a typed
answer: `None` here), "try again later" (`DependencyUnavailable`: no responder,
a timeout, or the service's own dependency down) and everything else, which the
callers treat as a retry too, never as a client error.

A registry's auth type never changes (the credentials service refuses it; another
type is another registry), so it is cached per registry (`BroadcastCache`: no
broadcast ever invalidates it, so only its age and a reconnect do); an entry is
dropped when the service says the registry is gone, so the cache holds nothing
stale for longer than `AUTH_TYPE_TTL_SECONDS`.

Sealed config secrets are cached too (`SEALED_TTL_SECONDS`): a config version's secrets never change
(the KV version is pinned), so the same version sealed to the same enrolled key is the same answer;
every deploy of a component with secrets would otherwise cost a round trip, a Vault read and a
seal. The key the plane enrolled is part of the cache key, so a re-enrolled agent never gets
values sealed to its old key, and only ciphertext is kept, never a value.
"""

from __future__ import annotations

from typing import Final, TypeVar

from pydantic import BaseModel

from libs.contracts import rpc
from libs.contracts.messages import (
    AuthType,
    ConfigSecretsReply,
    ConfigSecretsSeal,
    PullSecretReply,
    PullSecretRequest,
    RegistryGet,
    RegistryInfo,
    ResolvedImage,
    ResolveImage,
)
from libs.contracts.rpc import Rpc
from libs.runtime.bus import Bus, RpcFailed
from libs.runtime.cache import BroadcastCache
from libs.runtime.errors import DependencyUnavailable

Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

AUTH_TYPE_TTL_SECONDS: Final = 300.0
SEALED_TTL_SECONDS: Final = 300.0
# Registries whose pull needs no secret: the credentials service answers `sealed=None` for them.
NO_PULL_SECRET: Final[frozenset[AuthType]] = frozenset({"anonymous", "vendor"})


class CredentialsUnavailable(DependencyUnavailable):
    """The credentials service answered that it cannot serve the request now."""


class Credentials:
    def __init__(self, bus: Bus, *, timeout: float) -> None:
        self.bus = bus
        self.timeout = timeout
        self._auth_types: BroadcastCache[tuple[str, str], AuthType] = BroadcastCache(
            epoch=bus.epoch, max_age=AUTH_TYPE_TTL_SECONDS
        )
        self._sealed: BroadcastCache[tuple[str, ...], ConfigSecretsReply] = BroadcastCache(
            epoch=bus.epoch, max_entries=4096, max_age=SEALED_TTL_SECONDS
        )

    async def auth_type(self, *, org: str, registry_id: str) -> AuthType | None:
        """The registry's auth type (cached), or None when the org has no such registry."""
        key = (org, registry_id)
        cached = self._auth_types.get(key)
        if cached is not None:
            return cached
        ticket = self._auth_types.ticket()
        info = await self.registry(org=org, registry_id=registry_id)
        if info is None:
            self._auth_types.forget(key)
            return None
        self._auth_types.put(key, info.auth_type, ticket)
        return info.auth_type

    async def registry(self, *, org: str, registry_id: str) -> RegistryInfo | None:
        """The registry, or None when the org has no such registry."""
        return await self._ask(
            rpc.REGISTRY_GET, RegistryGet(org=org, registry_id=registry_id), gone=("not_found", "invalid")
        )

    async def resolve(
        self, *, org: str, registry_id: str, repository: str, reference: str
    ) -> ResolvedImage | None:
        """What the tag points to now, or None when the registry does not exist."""
        request = ResolveImage(org=org, registry_id=registry_id, repository=repository, reference=reference)
        return await self._ask_about(org, registry_id, rpc.RESOLVE_IMAGE, request)

    async def pull_secret(
        self, *, org: str, registry_id: str, dataplane_id: str, public_key: str
    ) -> PullSecretReply | None:
        """The pull secret sealed to the data plane's enrolled key, or None when the registry does not
        exist. The credentials service asks us for that key (`rpc.orchestrator.dataplane.key`);
        `public_key` goes along only for credentials services older than that, which seal to it."""
        request = PullSecretRequest(
            org=org, registry_id=registry_id, dataplane_id=dataplane_id, recipient_public_key=public_key
        )
        return await self._ask_about(org, registry_id, rpc.PULL_SECRET, request)

    async def config_secrets(
        self,
        *,
        org: str,
        project: str,
        component: str,
        environment: str,
        version: int,
        names: list[str],
        dataplane_id: str,
        enrolled_key: str,
    ) -> ConfigSecretsReply:
        """The environment's config secrets at KV `version`, sealed to the data plane's enrolled key
        (the credentials service asks us for that key, as for pull secrets; `enrolled_key` is the
        one we know, for the cache only)."""
        key = (org, project, component, environment, str(version), dataplane_id, enrolled_key, *names)
        cached = self._sealed.get(key)
        if cached is not None:
            return cached
        ticket = self._sealed.ticket()
        request = ConfigSecretsSeal(
            org=org,
            project=project,
            component=component,
            environment=environment,
            version=version,
            dataplane_id=dataplane_id,
            names=names,
        )
        answer = await self._ask(rpc.CONFIG_SECRETS_SEAL, request, gone=("not_found",))
        if answer is None:
            return ConfigSecretsReply(reason="not_found")
        if answer.reason == "sealed":
            self._sealed.put(key, answer, ticket)
        return answer

    async def _ask_about(self, org: str, registry_id: str, call: Rpc[Q, R], request: Q) -> R | None:
        """`_ask` about one registry: an answer that it is gone also drops its cached auth type."""
        answer = await self._ask(call, request, gone=("not_found",))
        if answer is None:
            self._auth_types.forget((org, registry_id))
        return answer

    async def _ask(self, call: Rpc[Q, R], request: Q, *, gone: tuple[str, ...]) -> R | None:
        """The answer; None when the service's error code is one of `gone`."""
        try:
            return await self.bus.ask(call, request, timeout=self.timeout)
        except RpcFailed as exc:
            if exc.error.code in gone:
                return None
            raise CredentialsUnavailable(f"credentials service: {exc.error.code}") from exc
