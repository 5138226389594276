"""Signing secrets, managed by the org's developers: create or rotate (shown once), status, delete.

The requirement (PostgreSQL) and the secret (Vault) change together: the secret
is written inside the transaction that records the requirement, so a Vault
failure rolls the requirement back and the old secret keeps working. After
either change every replica forgets the component (`ComponentChanged`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from libs.contracts.messages import ComponentChanged
from libs.runtime.broadcasts import Broadcasts
from libs.runtime.errors import NotFound
from services.webhook_gateway.domain.records import Binding
from services.webhook_gateway.domain.signatures import generate_secret
from services.webhook_gateway.store import SigningSecrets, StoreUnit
from services.webhook_gateway.usecases.components import ComponentDirectory

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SigningAdmin:
    uow: StoreUnit
    secrets: SigningSecrets
    directory: ComponentDirectory
    broadcasts: Broadcasts

    async def create(self, binding: Binding) -> tuple[str, datetime]:
        """A new secret (or a rotated one) and since when signatures are required."""
        await self.directory.existing(binding)
        secret = generate_secret()
        async with self.uow.transaction() as tx:
            created_at = await tx.signing.require(binding)
            await self.secrets.put(binding, secret)
        await self._changed(binding)
        log.info("signing secret created", extra={"component": str(binding)})
        return secret, created_at

    async def required_since(self, binding: Binding) -> datetime | None:
        return await self.uow.now.signing.required_since(binding)

    async def delete(self, binding: Binding) -> None:
        async with self.uow.transaction() as tx:
            if not await tx.signing.stop(binding):
                raise NotFound("signing secret")
            await self.secrets.delete(binding)
        await self._changed(binding)
        log.info("signing secret deleted", extra={"component": str(binding)})

    async def _changed(self, binding: Binding) -> None:
        self.directory.forget(binding)
        org, project, component = binding.parts()
        await self.broadcasts.announce(
            self.broadcasts.bus.subjects.components_changed,
            ComponentChanged(org=org, project=project, component=component),
        )
