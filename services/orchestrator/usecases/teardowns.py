"""Teardowns: tell a deleted component's data planes to remove what runs there.

Each teardown is stored with the deletion (in the same transaction), published
as a `RemoveCommand` on the data plane's deploy subject (JetStream,
de-duplicated by teardown id, so in order with the deploy commands before it),
and only then forgotten. What fails stays stored and the sweeper sends it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from libs.contracts.messages import utcnow
from libs.runtime.errors import DependencyUnavailable
from services.orchestrator.clients.agents import Agents
from services.orchestrator.domain.commands import remove_command
from services.orchestrator.domain.records import Teardown
from services.orchestrator.store import Store

log = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class Teardowns:
    store: Store
    agents: Agents

    async def send(self, teardowns: list[Teardown]) -> None:
        """Publish each removal to its data plane, then forget it; stops at the first failure."""
        for teardown in teardowns:
            await self.agents.send(remove_command(teardown, sent_at=utcnow()), msg_id=teardown.id)
            await self.store.now.teardowns.sent(teardown.id)
            log.info(
                "removal sent",
                extra={
                    "teardown_id": teardown.id,
                    "dataplane_id": teardown.dataplane_id,
                    "component": f"{teardown.project}/{teardown.component}",
                    "environment": teardown.environment,
                },
            )

    async def send_soon(self, teardowns: list[Teardown]) -> None:
        """`send` now if possible; they are stored, so what is not sent now the sweeper sends."""
        try:
            await self.send(teardowns)
        except DependencyUnavailable as exc:
            log.warning("removals deferred", extra={"count": len(teardowns), "error": str(exc)})
