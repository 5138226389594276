"""Client of the credentials service (NATS request-reply): registries, digests, pull secrets.

The orchestrator never sees a registry password: it asks the credentials service
for a registry's host, for the digest a tag points to, and for a pull secret
sealed to one data plane's public key, which it passes through untouched.

Errors are sorted into three kinds: "that registry does not exist" (a typed
answer: `None` here), "try again later" (`DependencyUnavailable`: no responder,
a timeout, or the service's own dependency down) and everything else, which the
callers treat as a retry too, never as a client error.

A registry's auth type never changes (the credentials service refuses it; another
type is another registry), so it is cached per registry id; entries expire after
`AUTH_TYPE_TTL_SECONDS` and are dropped when the service says the registry is gone,
so the cache holds nothing stale for longer than that.
"""

from __future__ import annotations

import time

from libs.contracts.messages import (
    PullSecretReply,
    PullSecretRequest,
    RegistryGet,
    RegistryInfo,
    ResolvedImage,
    ResolveImage,
)
from libs.runtime.bus import Bus, RpcFailed
from libs.runtime.errors import DependencyUnavailable

AUTH_TYPE_TTL_SECONDS = 300.0
# Registries whose pull needs no secret: the credentials service answers `sealed=None` for them.
NO_PULL_SECRET = frozenset({"anonymous", "vendor"})


class CredentialsUnavailable(DependencyUnavailable):
    """The credentials service answered that it cannot serve the request now."""


class Credentials:
    def __init__(self, bus: Bus, *, timeout: float) -> None:
        self.bus = bus
        self.timeout = timeout
        self._auth_types: dict[tuple[str, str], tuple[float, str]] = {}

    async def auth_type(self, *, org: str, registry_id: str) -> str | None:
        """The registry's auth type (cached), or None when the org has no such registry."""
        key = (org, registry_id)
        cached = self._auth_types.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        info = await self.registry(org=org, registry_id=registry_id)
        if info is None:
            self._auth_types.pop(key, None)
            return None
        self._auth_types[key] = (time.monotonic() + AUTH_TYPE_TTL_SECONDS, info.auth_type)
        return info.auth_type

    async def registry(self, *, org: str, registry_id: str) -> RegistryInfo | None:
        """The registry, or None when the org has no such registry."""
        try:
            return await self.bus.request(
                self.bus.subjects.rpc_registry_get,
                RegistryGet(org=org, registry_id=registry_id),
                RegistryInfo,
                timeout=self.timeout,
            )
        except RpcFailed as exc:
            if exc.error.code in ("not_found", "invalid"):
                return None
            raise CredentialsUnavailable(f"credentials service: {exc.error.code}") from exc

    async def resolve(
        self, *, org: str, registry_id: str, repository: str, reference: str
    ) -> ResolvedImage | None:
        """What the tag points to now, or None when the registry does not exist."""
        try:
            return await self.bus.request(
                self.bus.subjects.rpc_resolve_image,
                ResolveImage(org=org, registry_id=registry_id, repository=repository, reference=reference),
                ResolvedImage,
                timeout=self.timeout,
            )
        except RpcFailed as exc:
            if exc.error.code == "not_found":
                self._auth_types.pop((org, registry_id), None)
                return None
            raise CredentialsUnavailable(f"credentials service: {exc.error.code}") from exc

    async def pull_secret(self, *, org: str, registry_id: str, public_key: str) -> PullSecretReply | None:
        """The pull secret sealed to `public_key`, or None when the registry does not exist."""
        try:
            return await self.bus.request(
                self.bus.subjects.rpc_pull_secret,
                PullSecretRequest(org=org, registry_id=registry_id, recipient_public_key=public_key),
                PullSecretReply,
                timeout=self.timeout,
            )
        except RpcFailed as exc:
            if exc.error.code == "not_found":
                self._auth_types.pop((org, registry_id), None)
                return None
            raise CredentialsUnavailable(f"credentials service: {exc.error.code}") from exc
