"""Vault KV v2 adapter for signing secrets (the only module that imports hvac).

hvac is synchronous, so every call runs in a worker thread. Any failure to
reach or use Vault is `VaultUnavailable` (503 + Retry-After), never a 500, and
the exception text never includes the secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from libs.runtime.errors import DependencyUnavailable
from libs.runtime.settings import VaultSettings
from services.webhook_gateway.model import Binding

log = logging.getLogger(__name__)

T = TypeVar("T")
_KEY = "secret"


class VaultUnavailable(DependencyUnavailable):
    """Vault cannot be reached or refused the call; nothing was changed by us."""


class SigningSecretStore:
    def __init__(self, settings: VaultSettings, *, timeout: float = 5.0) -> None:
        self.mount = settings.vault_mount
        self.prefix = settings.vault_prefix.strip("/")
        self._client = hvac.Client(
            url=settings.vault_addr, token=settings.vault_token.get_secret_value(), timeout=timeout
        )

    def path(self, binding: Binding) -> str:
        return f"{self.prefix}/gateway/signing/{binding.org}/{binding.project}/{binding.component}"

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except hvac.exceptions.VaultError as exc:
            log.warning("vault call failed", extra={"what": what, "error": type(exc).__name__})
            raise VaultUnavailable(f"Vault refused {what}: {type(exc).__name__}") from None
        except requests.exceptions.RequestException as exc:
            raise VaultUnavailable(f"cannot reach Vault for {what}: {type(exc).__name__}") from None

    async def put(self, binding: Binding, secret: str) -> None:
        path = self.path(binding)
        await self._call(
            "write signing secret",
            lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret={_KEY: secret}, mount_point=self.mount
            ),
        )

    async def get(self, binding: Binding) -> str | None:
        path = self.path(binding)

        def read() -> str | None:
            try:
                answer: dict[str, Any] = self._client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None
            value = answer.get("data", {}).get("data", {}).get(_KEY)
            return value if isinstance(value, str) else None

        return await self._call("read signing secret", read)

    async def delete(self, binding: Binding) -> None:
        path = self.path(binding)

        def remove() -> None:
            try:
                self._client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                pass

        await self._call("delete signing secret", remove)

    def close(self) -> None:
        adapter = getattr(self._client, "adapter", None)
        if adapter is not None:
            adapter.close()
