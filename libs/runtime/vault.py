"""Vault (or OpenBao) KV v2, the way every service keeps secrets: the only module that imports hvac.

What is subtle:

* hvac is synchronous, so every call runs in a worker thread.
* Any failure to reach or use Vault is `VaultUnavailable` (503 + Retry-After for
  HTTP, a retry for consumers), never a 500; exception texts carry only the
  exception's type, never a path's content or a secret.
* `read` can pin a version: a caller that records the version it wrote in its
  database reads exactly that one, so a version written by a request whose
  database commit then failed is never used.
* A path or version that does not exist (or was deleted) reads as `None`; a
  delete of something absent succeeds, so cleanup is idempotent.
* `patch` is KV v2's own `PATCH` (a JSON merge patch: a string sets, `None` deletes, an absent key
  keeps), sent by hand because hvac's `patch` reads the secret first, and a write-only token (the
  orchestrator's) may not read. A path that does not exist yet is created with check-and-set 0, so
  two first writers cannot overwrite each other: the loser patches what the winner wrote.
* `start_renewal` keeps the service's own token alive: it reads the TTL from `lookup-self`, renews
  (`renew-self`, granted by each service's policy) at half of it, and reads the TTL the renewal
  granted for the next round, so a shorter grant (a role's max TTL drawing near) is followed. A token
  with no TTL (the dev root token) or not renewable needs nothing and the task ends. A failed round is
  logged (the error's type only, never the token) and retried after 1 s, doubling up to 30 s while
  Vault stays away (the token's remaining half is the margin). No token configured: no task. `close` stops it.
  A service holds its client as `async with KvStore(settings) as kv:` (renewing, then closed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from libs.runtime.errors import DependencyUnavailable
from libs.runtime.settings import VaultSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

RENEW_RETRY_S = 1.0  # after a failed renewal round, doubling up to RENEW_RETRY_MAX_S while it fails
RENEW_RETRY_MAX_S = 30.0


class VaultUnavailable(DependencyUnavailable):
    """Vault cannot be reached or refused the call: retry later."""


class KvStore:
    """One service's KV v2 client: paths below the settings' prefix on the settings' mount."""

    def __init__(self, settings: VaultSettings, *, timeout: float = 5.0) -> None:
        self.mount = settings.vault_mount
        self.prefix = settings.vault_prefix.strip("/")
        self._client = hvac.Client(
            url=settings.vault_addr, token=settings.vault_token.get_secret_value(), timeout=timeout
        )
        self._renewal: asyncio.Task[None] | None = None
        self.renewals = 0

    def path(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except hvac.exceptions.VaultError as exc:
            log.warning("vault call failed", extra={"what": what, "error": type(exc).__name__})
            raise VaultUnavailable(f"Vault refused to {what}: {type(exc).__name__}") from None
        except requests.exceptions.RequestException as exc:
            log.warning("vault unreachable", extra={"what": what, "error": type(exc).__name__})
            raise VaultUnavailable(f"cannot reach Vault to {what}: {type(exc).__name__}") from None

    async def write(self, path: str, data: Mapping[str, str], *, what: str = "write a secret") -> int:
        """Write a new version of `path`; returns its number."""

        def put() -> int:
            answer: dict[str, Any] = self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=dict(data), mount_point=self.mount
            )
            return int(answer["data"]["version"])

        return await self._call(what, put)

    async def patch(
        self, path: str, changes: Mapping[str, str | None], *, what: str = "patch a secret"
    ) -> int:
        """Merge `changes` into the latest version of `path` (created when absent), never reading it;
        returns the new version's number."""
        url = f"/v1/{self.mount}/data/{path}"

        def merge() -> int:
            for _ in range(3):
                try:
                    answer = self._client.adapter.request(
                        "PATCH",
                        url,
                        json={"data": dict(changes)},
                        headers={"Content-Type": "application/merge-patch+json"},
                    )
                    return int(answer["data"]["version"])
                except hvac.exceptions.InvalidPath:
                    pass  # nothing there yet: create it, unless another writer does so first
                try:
                    created: dict[str, Any] = self._client.secrets.kv.v2.create_or_update_secret(
                        path=path,
                        secret={k: v for k, v in changes.items() if v is not None},
                        cas=0,
                        mount_point=self.mount,
                    )
                    return int(created["data"]["version"])
                except hvac.exceptions.InvalidRequest:
                    continue  # check-and-set lost: the path exists now, so patch it
            raise hvac.exceptions.VaultError("the secret kept changing between patch and create")

        return await self._call(what, merge)

    async def read(
        self, path: str, *, version: int | None = None, what: str = "read a secret"
    ) -> dict[str, Any] | None:
        """The data of `version` (default: the latest), or None when it does not exist or was deleted."""

        def get() -> dict[str, Any] | None:
            try:
                answer: dict[str, Any] = self._client.secrets.kv.v2.read_secret_version(
                    path=path, version=version, mount_point=self.mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None
            data = (answer.get("data") or {}).get("data")
            return data if isinstance(data, dict) else None

        return await self._call(what, get)

    async def destroy_version(
        self, path: str, version: int, *, what: str = "destroy a secret version"
    ) -> None:
        """Destroy one version (undo a write whose database commit failed)."""
        await self._call(
            what,
            lambda: self._client.secrets.kv.v2.destroy_secret_versions(
                path=path, versions=[version], mount_point=self.mount
            ),
        )

    async def destroy(self, path: str, *, what: str = "destroy a secret") -> None:
        """Destroy every version and the metadata; a path that does not exist is fine."""

        def remove() -> None:
            try:
                self._client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                pass

        await self._call(what, remove)

    async def check(self) -> None:
        """Readiness: a real, authenticated round trip (also catches an expired or revoked token)."""
        await self._call("look up its token", lambda: self._client.auth.token.lookup_self())

    async def __aenter__(self) -> KvStore:
        self.start_renewal()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def start_renewal(self) -> None:
        """Renew the token in the background at half its TTL, until `close` (needs a running loop)."""
        if self._renewal is None and self._client.token:
            self._renewal = asyncio.get_running_loop().create_task(
                self._renew_forever(), name="vault-renewal"
            )

    async def _ttl(self) -> tuple[float, bool]:
        answer: dict[str, Any] = await self._call(
            "look up its token", lambda: self._client.auth.token.lookup_self()
        )
        data = answer.get("data") or {}
        return float(data.get("ttl") or 0), bool(data.get("renewable"))

    async def _renew_forever(self) -> None:
        ttl: float | None = None
        retry = RENEW_RETRY_S
        while True:
            try:
                if ttl is None:
                    ttl, renewable = await self._ttl()
                    if ttl <= 0 or not renewable:
                        log.info("vault token needs no renewal", extra={"ttl": ttl, "renewable": renewable})
                        return
                await asyncio.sleep(max(ttl / 2, RENEW_RETRY_S / 2))
                answer: dict[str, Any] = await self._call(
                    "renew its token", lambda: self._client.auth.token.renew_self()
                )
                self.renewals += 1
                granted = float((answer.get("auth") or {}).get("lease_duration") or 0)
                log.info("vault token renewed", extra={"ttl": granted})
                ttl = granted if granted > 0 else None
                retry = RENEW_RETRY_S
            except VaultUnavailable:
                # logged by _call; ask the TTL again next time: the token may have less left than we think
                ttl = None
                await asyncio.sleep(retry)
                retry = min(retry * 2, RENEW_RETRY_MAX_S)

    def close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            self._renewal = None
        adapter = getattr(self._client, "adapter", None)
        if adapter is not None:
            adapter.close()
