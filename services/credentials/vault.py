"""Vault KV v2 adapter for registry secrets (the only module that imports hvac).

Secrets live at `<mount>/<prefix>/orgs/<org>/registries/<id>` as
`{username, password, host}`. hvac is synchronous, so every call runs in a
worker thread. Any failure to reach or use Vault is `VaultUnavailable`
(503 + Retry-After), never a 500; exception texts carry only the exception
type, never a path's content.

What is subtle: callers read a *pinned version* (the one the database row
names), not "the latest", so a version written by a request whose database
commit then failed is never used (see `registries.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from libs.runtime.errors import DependencyUnavailable
from libs.runtime.settings import VaultSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


class VaultUnavailable(DependencyUnavailable):
    """Vault cannot be reached or refused the call: retry later."""


class SecretMissing(Exception):
    """The version the database names is not in Vault (destroyed or deleted by hand)."""


@dataclass(frozen=True, slots=True)
class StoredSecret:
    username: str
    password: str = field(repr=False)
    host: str


class RegistrySecrets:
    def __init__(self, settings: VaultSettings, *, timeout: float = 5.0) -> None:
        self.mount = settings.vault_mount
        self.prefix = settings.vault_prefix.strip("/")
        self._client = hvac.Client(
            url=settings.vault_addr, token=settings.vault_token.get_secret_value(), timeout=timeout
        )

    def path(self, org: str, registry_id: str) -> str:
        return f"{self.prefix}/orgs/{org}/registries/{registry_id}"

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except hvac.exceptions.VaultError as exc:
            log.warning("vault call failed", extra={"what": what, "error": type(exc).__name__})
            raise VaultUnavailable(f"Vault refused to {what}: {type(exc).__name__}") from None
        except requests.exceptions.RequestException as exc:
            log.warning("vault unreachable", extra={"what": what, "error": type(exc).__name__})
            raise VaultUnavailable(f"cannot reach Vault to {what}: {type(exc).__name__}") from None

    async def write(self, path: str, secret: Mapping[str, str]) -> int:
        """Write a new version; returns its number."""

        def put() -> int:
            answer: dict[str, Any] = self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=dict(secret), mount_point=self.mount
            )
            return int(answer["data"]["version"])

        return await self._call("write a registry secret", put)

    async def read(self, path: str, version: int) -> StoredSecret:
        def get() -> StoredSecret | None:
            try:
                answer: dict[str, Any] = self._client.secrets.kv.v2.read_secret_version(
                    path=path, version=version, mount_point=self.mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None
            data = (answer.get("data") or {}).get("data") or {}
            if not all(isinstance(data.get(k), str) for k in ("username", "password", "host")):
                return None
            return StoredSecret(username=data["username"], password=data["password"], host=data["host"])

        found = await self._call("read a registry secret", get)
        if found is None:
            raise SecretMissing(f"version {version} of the registry secret is not in Vault")
        return found

    async def destroy_version(self, path: str, version: int) -> None:
        """Destroy one version (undo a write whose database commit failed)."""
        await self._call(
            "destroy a registry secret version",
            lambda: self._client.secrets.kv.v2.destroy_secret_versions(
                path=path, versions=[version], mount_point=self.mount
            ),
        )

    async def destroy(self, path: str) -> None:
        """Destroy every version and the metadata; a path that does not exist is fine."""

        def remove() -> None:
            try:
                self._client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                pass

        await self._call("destroy a registry secret", remove)

    async def check(self) -> None:
        """Readiness: a real, authenticated round trip (also catches an expired or revoked token)."""
        await self._call("look up its token", lambda: self._client.auth.token.lookup_self())

    def close(self) -> None:
        adapter = getattr(self._client, "adapter", None)
        if adapter is not None:
            adapter.close()
