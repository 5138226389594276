"""CI tokens (an org developer's to manage): create (shown once), list (never the token), revoke.

Revoking works while the orchestrator is down: it needs only the database and
the broadcast. A token belongs to its component's identity, not to its name:
the list shows only the current component's tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from libs.contracts.ids import looks_like, new_id
from libs.contracts.messages import TokenRevoked, utcnow
from libs.runtime.broadcasts import Broadcasts
from libs.runtime.errors import NotFound
from services.webhook_gateway.domain.records import Binding, TokenRow
from services.webhook_gateway.domain.tokens import generate_token, token_hash, token_prefix
from services.webhook_gateway.store import StoreUnit
from services.webhook_gateway.usecases.authentication import TokenAuthenticator
from services.webhook_gateway.usecases.components import ComponentDirectory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class NewToken:
    row: TokenRow
    token: str  # the only time it exists outside CI's secret store


@dataclass(kw_only=True)
class TokenAdmin:
    uow: StoreUnit
    directory: ComponentDirectory
    auth: TokenAuthenticator
    broadcasts: Broadcasts

    async def create(self, binding: Binding, *, name: str | None, expires_in_days: int | None) -> NewToken:
        info = await self.directory.existing(binding)
        token = generate_token()
        now = utcnow()
        row = TokenRow(
            id=new_id("tok"),
            binding=binding,
            name=name or "",
            token_prefix=token_prefix(token),
            token_sha256=token_hash(token),
            created_at=now,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
            revoked_at=None,
            last_used_at=None,
            component_id=info.component_id,
        )
        await self.uow.now.tokens.insert(row)
        log.info(
            "ci token created",
            extra={"token_id": row.id, "token_prefix": row.token_prefix, "component": str(binding)},
        )
        return NewToken(row=row, token=token)

    async def list(self, binding: Binding) -> list[TokenRow]:
        info = await self.directory.existing(binding)
        return [r for r in await self.uow.now.tokens.of_component(binding) if r.belongs_to(info.component_id)]

    async def revoke(self, binding: Binding, token_id: str) -> None:
        """Revoke in the database, drop locally, broadcast to every replica."""
        if not looks_like("tok", token_id):
            raise NotFound("token")
        row = await self.uow.now.tokens.revoke(binding, token_id)
        if row is None:
            raise NotFound("token")
        self.auth.revoked(token_id)
        await self.broadcasts.announce(
            self.broadcasts.bus.subjects.tokens_revoked, TokenRevoked(token_id=token_id)
        )
        log.info(
            "ci token revoked",
            extra={"token_id": token_id, "token_prefix": row.token_prefix, "component": str(binding)},
        )
