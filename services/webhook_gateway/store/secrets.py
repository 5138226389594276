"""Signing secrets in Vault KV v2, at `<prefix>/gateway/signing/<org>/<project>/<component>`.

Over the shared `libs.runtime.vault.KvStore` (every failure is `VaultUnavailable`,
a 503; texts never carry the secret). The secret is written inside the database
transaction that requires signatures, so a Vault failure leaves the old state.
"""

from __future__ import annotations

from libs.runtime.vault import KvStore
from services.webhook_gateway.domain.records import Binding

_KEY = "secret"


class SigningSecrets:
    def __init__(self, kv: KvStore) -> None:
        self.kv = kv

    def path(self, binding: Binding) -> str:
        return self.kv.path("gateway", "signing", *binding.parts())

    async def put(self, binding: Binding, secret: str) -> None:
        await self.kv.write(self.path(binding), {_KEY: secret}, what="write the signing secret")

    async def get(self, binding: Binding) -> str | None:
        data = await self.kv.read(self.path(binding), what="read the signing secret")
        value = (data or {}).get(_KEY)
        return value if isinstance(value, str) else None

    async def delete(self, binding: Binding) -> None:
        await self.kv.destroy(self.path(binding), what="delete the signing secret")
