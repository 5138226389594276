"""JetStream's intake stream: where an accepted request is stored before CI gets its 202.

`Nats-Msg-Id` is the deployment id, so publishing the same accepted request
again (a retry after a crash behind the publish) is kept once by JetStream.
"""

from __future__ import annotations

from libs.contracts.messages import ImagePushed
from libs.runtime.bus import Bus
from services.webhook_gateway.domain.records import AcceptedRow


class IntakeStream:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def publish(self, row: AcceptedRow, *, token_prefix: str) -> None:
        """Store `row` as an `ImagePushed`; `BusUnavailable` if JetStream did not acknowledge it."""
        event = ImagePushed(
            deployment_id=row.deployment_id,
            org=row.binding.org,
            project=row.binding.project,
            component=row.binding.component,
            image=row.image,
            accepted_at=row.created_at,
            token_prefix=token_prefix,
            idempotency_key=row.idempotency_key,
        )
        await self.bus.publish_durable(self.bus.subjects.image_pushed, event, msg_id=row.deployment_id)
