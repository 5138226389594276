"""The audit trail's sending side: every service records what it changed and what it refused.

Events go to the AUDIT stream on JetStream (`landfall.v1.audit.<org>`, message id =
event id), where they wait for the orchestrator, which records and serves them:
an orchestrator that is down loses none.

What is subtle: recording never slows or fails the request that caused it. An
event is queued in memory and a background task publishes the queue in order,
retrying with backoff while NATS is away; at shutdown the queue is flushed for a
few seconds. What a SIGKILL finds still queued (normally nothing: a publish takes
about a millisecond) is lost; the change itself is not. Events never hold a
secret: actors are ids, names and prefixes, targets are ids and paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import NotRequired, Protocol, TypedDict, Unpack

from libs.contracts.identity import Actor, AuditEvent, Outcome
from libs.contracts.ids import new_id
from libs.runtime.bus import Bus
from libs.runtime.errors import DependencyUnavailable

log = logging.getLogger(__name__)


class AuditEntry(TypedDict):
    """What the one who saw a change or a refusal knows about it (the log adds id, time, service)."""

    org: str
    actor: Actor
    action: str
    target: str
    outcome: Outcome
    status: int
    request_id: str | None
    detail: NotRequired[str]


class AuditSink(Protocol):
    """What the HTTP guard needs of an audit log."""

    def record(self, **entry: Unpack[AuditEntry]) -> object: ...


class AuditLog:
    def __init__(self, bus: Bus, *, service: str, max_queued: int = 100_000) -> None:
        self.bus = bus
        self.service = service
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(maxsize=max_queued)
        self._task: asyncio.Task[None] | None = None

    def record(self, **entry: Unpack[AuditEntry]) -> AuditEvent:
        event = AuditEvent(
            id=new_id("aud"),
            time=datetime.now(UTC),
            service=self.service,
            **{**entry, "target": entry["target"][:300], "detail": entry.get("detail", "")[:300]},
        )
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.error("audit queue full: event dropped", extra={"action": event.action, "org": event.org})
        return event

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"audit-{self.service}")

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            await self._publish(event)
            self._queue.task_done()

    async def _publish(self, event: AuditEvent) -> None:
        delay = 0.2
        while True:
            try:
                await self.bus.publish_durable(self.bus.subjects.audit(event.org), event, msg_id=event.id)
                return
            except DependencyUnavailable as exc:
                log.warning("audit event not stored yet; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def stop(self, *, timeout: float = 5.0) -> None:
        """Flush what is queued (for at most `timeout` seconds), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
