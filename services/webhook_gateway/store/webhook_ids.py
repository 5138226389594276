"""webhook-id values seen recently: replay protection for signed requests.

An id is remembered for `replay_window` (longer than the signature's timestamp
tolerance), so a replay inside the tolerance is caught here and one outside it
by the timestamp check. An id older than the window may be used again.
"""

from __future__ import annotations

from datetime import timedelta

from libs.runtime.store import Repo
from services.webhook_gateway.domain.records import Binding


class WebhookIdRepo(Repo):
    async def first_use(self, binding: Binding, webhook_id: str, *, replay_window: timedelta) -> bool:
        """Record the id; False if it was already seen within the window (a replay)."""
        async with self.guard():
            fresh = await self.db.fetchval(
                "INSERT INTO seen_webhook_ids (org, project, component, webhook_id) "
                "VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (org, project, component, webhook_id) DO UPDATE SET seen_at = now() "
                "WHERE seen_webhook_ids.seen_at < now() - $5::interval RETURNING 1",
                *binding.parts(),
                webhook_id,
                replay_window,
            )
        return bool(fresh)

    async def forget(self, binding: Binding, webhook_id: str) -> None:
        async with self.guard():
            await self.db.execute(
                "DELETE FROM seen_webhook_ids "
                "WHERE org = $1 AND project = $2 AND component = $3 AND webhook_id = $4",
                *binding.parts(),
                webhook_id,
            )

    async def prune(self, *, replay_window: timedelta) -> int:
        async with self.guard():
            status: str = await self.db.execute(
                "DELETE FROM seen_webhook_ids WHERE seen_at < now() - $1::interval", replay_window
            )
        return int(status.rsplit(" ", 1)[-1])
