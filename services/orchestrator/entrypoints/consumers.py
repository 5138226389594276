"""What the orchestrator reads from NATS: intake events and rollout reports (JetStream), heartbeats.

What is subtle:

* Intake and status are durable JetStream pull consumers (`libs.runtime.consumers`):
  a message is acked only once its effect is stored, so a crash means redelivery,
  and every use case is idempotent (intake inserts with ON CONFLICT DO NOTHING;
  reports only move a deployment forward). When PostgreSQL (or another
  dependency) is down the message is nak'ed with a delay instead of being dropped.
* A message that can never be handled (unknown schema version, unknown
  component, a report on another data plane's subject) is terminated with a
  log line, so it does not come back forever; an unexpected error is retried a
  few times, then dropped the same way (`retry_or_drop`).
* Both consumers handle messages concurrently, but one at a time and in stream
  order per key: intake per component (the order in which a component's
  deployments are recorded decides which supersedes which), status per deployment.
* A status report is trusted only on its own data plane's subject (NATS
  permissions let an agent publish on nothing else).
* Heartbeats are core NATS (lossy, every few seconds), shared by the replicas'
  queue group.
* The audit trail of every service arrives on the AUDIT stream and is inserted by
  event id (a redelivery inserts nothing), in any order: each item carries its own
  time-ordered id, so the order of arrival does not matter, and an orchestrator that
  was down catches up from its durable consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError

from libs.contracts.identity import AuditEvent
from libs.contracts.messages import AgentHeartbeat, ImagePushed, RolloutReport
from libs.runtime.bus import Bus
from libs.runtime.consumers import (
    NAK_DELAY_SECONDS,
    MessageHandler,
    MessageKey,
    Settlement,
    json_key,
    pull_forever,
    retry_or_drop,
    settle,
)
from libs.runtime.errors import DependencyUnavailable
from services.orchestrator.entrypoints import UseCases

log = logging.getLogger(__name__)

INTAKE_DURABLE = "orchestrator-intake"
STATUS_DURABLE = "orchestrator-status"
AUDIT_DURABLE = "orchestrator-audit"
DURABLES = (INTAKE_DURABLE, STATUS_DURABLE, AUDIT_DURABLE)
QUEUE = "orchestrator"


M = TypeVar("M", bound=BaseModel)


def _handler(
    what: str, noun: str, model: type[M], apply: Callable[[M, Msg], Awaitable[Settlement]]
) -> MessageHandler:
    """Decode, apply, settle: unreadable = term, a dependency down = nak later, a bug = retry or drop."""

    async def handle(msg: Msg) -> None:
        try:
            message = model.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error(f"{what}: unreadable {noun}, dropped", extra={"errors": str(exc.errors()[:3])})
            await settle(msg, "term")
            return
        ids: dict[str, str | None] = {"deployment_id": getattr(message, "deployment_id", None)}
        try:
            outcome = await apply(message, msg)
        except DependencyUnavailable as exc:
            log.warning(f"{what}: retry later", extra={**ids, "error": str(exc)})
            await settle(msg, "nak", delay=NAK_DELAY_SECONDS)
            return
        except Exception:
            await retry_or_drop(msg, what, ids)
            return
        await settle(msg, outcome)

    return handle


def intake_handler(usecases: UseCases) -> MessageHandler:
    async def apply(event: ImagePushed, msg: Msg) -> Settlement:
        if await usecases.intake.intake(event):
            return "ack"
        log.warning(
            "intake: unknown component, dropped",
            extra={
                "deployment_id": event.deployment_id,
                "org": event.org,
                "project": event.project,
                "component": event.component,
            },
        )
        return "term"

    return _handler("intake", "event", ImagePushed, apply)


def status_handler(bus: Bus, usecases: UseCases) -> MessageHandler:
    async def apply(report: RolloutReport, msg: Msg) -> Settlement:
        if msg.subject != bus.subjects.status(report.dataplane_id):
            log.warning(
                "status: report on another data plane's subject, dropped",
                extra={"deployment_id": report.deployment_id, "dataplane_id": report.dataplane_id},
            )
            return "term"
        await usecases.reports.apply(report)
        return "ack"

    return _handler("status", "report", RolloutReport, apply)


def audit_handler(bus: Bus, usecases: UseCases) -> MessageHandler:
    async def apply(event: AuditEvent, msg: Msg) -> Settlement:
        if msg.subject != bus.subjects.audit(event.org):
            log.warning("audit: event on another org's subject, dropped", extra={"org": event.org})
            return "term"
        await usecases.audit.record(event)
        return "ack"

    return _handler("audit", "event", AuditEvent, apply)


def _durables(bus: Bus, usecases: UseCases) -> dict[str, tuple[str, str, MessageHandler, MessageKey]]:
    """Each durable consumer's stream, subject, handler and the key that orders its messages."""
    subjects = bus.subjects
    return {
        INTAKE_DURABLE: (
            subjects.intake_stream.name,
            subjects.image_pushed,
            intake_handler(usecases),
            json_key("org", "project", "component"),
        ),
        STATUS_DURABLE: (
            subjects.status_stream.name,
            subjects.all_status,
            status_handler(bus, usecases),
            json_key("deployment_id"),
        ),
        AUDIT_DURABLE: (
            subjects.audit_stream.name,
            subjects.all_audit,
            audit_handler(bus, usecases),
            json_key("id"),
        ),
    }


async def consume(bus: Bus, usecases: UseCases, durable: str, *, concurrency: int) -> None:
    """Run one of the `DURABLES` until cancelled."""
    stream, subject, handle, key = _durables(bus, usecases)[durable]
    await pull_forever(
        bus, stream=stream, subject=subject, durable=durable, handle=handle, key=key, concurrency=concurrency
    )


async def subscribe_heartbeats(bus: Bus, usecases: UseCases) -> None:
    async def on_heartbeat(msg: Msg) -> None:
        try:
            beat = AgentHeartbeat.model_validate_json(msg.data)
        except ValidationError:
            log.warning("unreadable heartbeat", extra={"subject": msg.subject})
            return
        if msg.subject != bus.subjects.heartbeat(beat.dataplane_id):
            return
        await usecases.dataplanes.heartbeat(dataplane_id=beat.dataplane_id, version=beat.version)

    await bus.nc.subscribe(bus.subjects.all_heartbeats, queue=QUEUE, cb=on_heartbeat)
