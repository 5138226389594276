"""Which components require signed webhooks (the secret itself is in Vault: `secrets.py`)."""

from __future__ import annotations

from datetime import datetime

from libs.runtime.store import Repo
from services.webhook_gateway.domain.records import Binding


class SigningRepo(Repo):
    async def required_since(self, binding: Binding) -> datetime | None:
        """When signatures became required for the component, or None if they are not."""
        async with self.guard():
            value: datetime | None = await self.db.fetchval(
                "SELECT created_at FROM signing_required WHERE org = $1 AND project = $2 AND component = $3",
                *binding.parts(),
            )
        return value

    async def require(self, binding: Binding) -> datetime:
        """Require signatures from now on (again, after a rotation); returns when."""
        async with self.guard():
            created: datetime = await self.db.fetchval(
                "INSERT INTO signing_required (org, project, component) VALUES ($1, $2, $3) "
                "ON CONFLICT (org, project, component) DO UPDATE SET created_at = now() RETURNING created_at",
                *binding.parts(),
            )
        return created

    async def stop(self, binding: Binding) -> bool:
        """Stop requiring signatures; whether they were required."""
        async with self.guard():
            existed = await self.db.fetchval(
                "DELETE FROM signing_required WHERE org = $1 AND project = $2 AND component = $3 RETURNING 1",
                *binding.parts(),
            )
        return bool(existed)
