"""What the orchestrator listens to on NATS: intake, rollout reports, heartbeats, RPCs.

What is subtle:

* Intake and status are durable JetStream pull consumers: a message is acked
  only once its effect is stored, so a crash means redelivery, and every
  handler is idempotent (intake inserts with ON CONFLICT DO NOTHING; reports
  only move a deployment forward). When PostgreSQL is down the message is
  nak'ed with a delay instead of being dropped.
* A message that can never be handled (unknown schema version, unknown
  component, a report on another data plane's subject) is terminated with a
  log line, so it does not come back forever.
* Both consumers handle messages concurrently (`KeyedRunner`), but one at a
  time and in stream order per key: intake per component (the order in which
  a component's deployments are recorded decides which supersedes which),
  status per deployment. Each message is acked after its own handling.
* A status report is trusted only on its own data plane's subject (NATS
  permissions let an agent publish on nothing else) and only for deployments
  that were sent to that data plane.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from libs.contracts.messages import (
    AgentHeartbeat,
    ComponentGet,
    ComponentInfo,
    DeploymentGet,
    DeploymentView,
    ImagePushed,
    RegistryUsage,
    RegistryUsageReply,
    RolloutReport,
)
from libs.runtime.bus import Bus, RpcHandlerError
from libs.runtime.errors import DependencyUnavailable
from services.orchestrator.catalog import Catalog
from services.orchestrator.deployments import Deployer

log = logging.getLogger(__name__)

INTAKE_DURABLE = "orchestrator-intake"
STATUS_DURABLE = "orchestrator-status"
RPC_QUEUE = "orchestrator"
NAK_DELAY_SECONDS = 2.0
MAX_DELIVERIES_ON_ERROR = 5

MessageHandler = Callable[[Msg], Awaitable[None]]
T = TypeVar("T")


MessageKey = Callable[[Msg], Hashable]


def _one_key(msg: Msg) -> Hashable:
    return None


def json_key(*fields: str) -> MessageKey:
    """Order messages by these fields of their JSON body (unreadable bodies share one key)."""

    def key(msg: Msg) -> Hashable:
        try:
            body = json.loads(msg.data)
            return tuple(str(body.get(f)) for f in fields) if isinstance(body, dict) else None
        except ValueError:
            return None

    return key


class KeyedRunner:
    """Handle messages concurrently, but one at a time and in arrival order per key.

    At most `concurrency` handlers run at once; at most `held` messages are held
    (fetched, not yet settled), so a hot key queues without starving the others
    and the consumer never holds more than it can finish within the ack wait."""

    def __init__(self, handle: MessageHandler, *, key: MessageKey, concurrency: int, held: int) -> None:
        self._handle = handle
        self._key = key
        self._gate = asyncio.Semaphore(concurrency)
        self._held_max = max(held, concurrency)
        self._tails: dict[Hashable, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._room.set()

    def room(self) -> int:
        return self._held_max - len(self._tasks)

    async def wait_for_room(self) -> int:
        while self.room() <= 0:
            self._room.clear()
            await self._room.wait()
        return self.room()

    def submit(self, msg: Msg) -> None:
        key = self._key(msg)
        task = asyncio.create_task(self._run(self._tails.get(key), msg))
        self._tails[key] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if self._tails.get(key) is finished:
                del self._tails[key]
            self._room.set()

        task.add_done_callback(done)

    async def _run(self, before: asyncio.Task[None] | None, msg: Msg) -> None:
        if before is not None:
            await asyncio.wait({before})  # its outcome is its own; only the order matters here
        async with self._gate:
            try:
                await self._handle(msg)
            except Exception:  # the handlers settle their own errors; this is a bug in one
                log.exception("message handler failed", extra={"subject": msg.subject})

    async def cancel(self) -> None:
        """Stop: unsettled messages are redelivered after the ack wait (the handlers are idempotent)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def pull_forever(
    bus: Bus,
    *,
    stream: str,
    subject: str,
    durable: str,
    handle: MessageHandler,
    key: MessageKey = _one_key,
    concurrency: int = 1,
    ack_wait: float = 60.0,
    batch: int = 16,
    fetch_timeout: float = 1.0,
) -> None:
    """Fetch from a durable pull consumer and hand each message to `handle`, until cancelled.

    Messages with the same `key` are handled one after another in stream order; up to
    `concurrency` with different keys at once (the default key puts all in one order)."""
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_ack_pending=1000,
        filter_subject=subject,
    )
    subscription = await bus.js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
    runner = KeyedRunner(handle, key=key, concurrency=concurrency, held=max(batch, 4 * concurrency))
    try:
        while True:
            room = await runner.wait_for_room()
            try:
                messages = await subscription.fetch(batch=min(batch, room), timeout=fetch_timeout)
            except TimeoutError:
                # nats.errors.TimeoutError subclasses the builtin, which fetch also raises as such
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as exc:
                log.warning("consumer waiting for NATS", extra={"durable": durable, "error": repr(exc)})
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                runner.submit(msg)
    finally:
        await runner.cancel()
        try:
            await subscription.unsubscribe()
        except Exception:  # the connection may be gone at shutdown
            log.debug("unsubscribe failed", extra={"durable": durable})


async def _settle(msg: Msg, action: str) -> None:
    try:
        if action == "ack":
            await msg.ack()
        elif action == "term":
            await msg.term()
        else:
            await msg.nak(delay=NAK_DELAY_SECONDS)
    except (TimeoutError, nats.errors.Error) as exc:
        # Not acknowledged means redelivered later; the handlers are idempotent.
        log.warning("could not settle message", extra={"action": action, "error": repr(exc)})


async def _on_bug(msg: Msg, what: str, ids: dict[str, str | None]) -> None:
    """An unexpected error: retry a few times (it may be transient), then stop redelivering."""
    delivered = msg.metadata.num_delivered if msg.reply else 1
    if delivered is not None and delivered >= MAX_DELIVERIES_ON_ERROR:
        log.exception(f"{what}: failed {delivered} times, dropped", extra=ids)
        await _settle(msg, "term")
    else:
        log.exception(f"{what}: failed, will retry", extra=ids)
        await _settle(msg, "nak")


def intake_handler(deployer: Deployer) -> MessageHandler:
    async def handle(msg: Msg) -> None:
        try:
            event = ImagePushed.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("intake: unreadable event, dropped", extra={"errors": str(exc.errors()[:3])})
            await _settle(msg, "term")
            return
        try:
            known = await deployer.intake(event)
        except DependencyUnavailable as exc:
            log.warning(
                "intake: retry later", extra={"deployment_id": event.deployment_id, "error": str(exc)}
            )
            await _settle(msg, "nak")
            return
        except Exception:
            await _on_bug(msg, "intake", {"deployment_id": event.deployment_id})
            return
        if not known:
            log.warning(
                "intake: unknown component, dropped",
                extra={
                    "deployment_id": event.deployment_id,
                    "org": event.org,
                    "project": event.project,
                    "component": event.component,
                },
            )
            await _settle(msg, "term")
            return
        await _settle(msg, "ack")

    return handle


def status_handler(deployer: Deployer) -> MessageHandler:
    async def handle(msg: Msg) -> None:
        try:
            report = RolloutReport.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("status: unreadable report, dropped", extra={"errors": str(exc.errors()[:3])})
            await _settle(msg, "term")
            return
        if msg.subject != deployer.bus.subjects.status(report.dataplane_id):
            log.warning(
                "status: report on another data plane's subject, dropped",
                extra={"deployment_id": report.deployment_id, "dataplane_id": report.dataplane_id},
            )
            await _settle(msg, "term")
            return
        try:
            await deployer.apply_report(report)
        except DependencyUnavailable as exc:
            log.warning(
                "status: retry later", extra={"deployment_id": report.deployment_id, "error": str(exc)}
            )
            await _settle(msg, "nak")
            return
        except Exception:
            await _on_bug(msg, "status", {"deployment_id": report.deployment_id})
            return
        await _settle(msg, "ack")

    return handle


async def subscribe_heartbeats(bus: Bus, catalog: Catalog, *, write_every: float = 0.0) -> None:
    """Store agents' heartbeats: a plane's first one (and a new agent version) at once, then at most
    one write per `write_every` seconds per plane, so `last_seen` lags by at most that plus the
    agents' interval (keep the sum below the freshness window)."""
    written: dict[str, tuple[float, str]] = {}  # data plane -> (monotonic time written, version)

    async def on_heartbeat(msg: Msg) -> None:
        try:
            beat = AgentHeartbeat.model_validate_json(msg.data)
        except ValidationError:
            log.warning("unreadable heartbeat", extra={"subject": msg.subject})
            return
        if msg.subject != bus.subjects.heartbeat(beat.dataplane_id):
            return
        now = time.monotonic()
        last = written.get(beat.dataplane_id)
        if last is not None and last[1] == beat.version and now - last[0] < write_every:
            return
        try:
            await catalog.heartbeat(dataplane_id=beat.dataplane_id, version=beat.version)
        except DependencyUnavailable as exc:
            log.warning("heartbeat not stored", extra={"dataplane_id": beat.dataplane_id, "error": str(exc)})
            return
        written[beat.dataplane_id] = (now, beat.version)

    await bus.nc.subscribe(bus.subjects.all_heartbeats, queue=RPC_QUEUE, cb=on_heartbeat)


async def serve_rpcs(bus: Bus, catalog: Catalog, deployer: Deployer) -> None:
    async def unavailable_as_error(work: Awaitable[T]) -> T:
        try:
            return await work
        except DependencyUnavailable as exc:
            raise RpcHandlerError("unavailable", str(exc)) from exc

    async def component_get(req: ComponentGet) -> ComponentInfo:
        component = await unavailable_as_error(
            catalog.repo.get_component(req.org, req.project, req.component)
        )
        if component is None:
            raise RpcHandlerError("not_found", "no such component")
        return ComponentInfo(
            org=component.org,
            project=component.project,
            component=component.name,
            type=component.type,
            registry_id=component.registry_id,
            registry_host=component.registry_host,
            repository=component.repository,
            component_id=component.id,
        )

    async def deployment_get(req: DeploymentGet) -> DeploymentView:
        deployment = await unavailable_as_error(deployer.repo.get_deployment(req.deployment_id))
        if deployment is None:
            raise RpcHandlerError("not_found", "no such deployment")
        return deployment.view()

    async def registry_usage(req: RegistryUsage) -> RegistryUsageReply:
        names = await unavailable_as_error(catalog.registry_usage(req.org, req.registry_id))
        return RegistryUsageReply(components=names)

    await bus.serve(bus.subjects.rpc_component_get, ComponentGet, component_get, queue=RPC_QUEUE)
    await bus.serve(bus.subjects.rpc_deployment_get, DeploymentGet, deployment_get, queue=RPC_QUEUE)
    await bus.serve(bus.subjects.rpc_registry_usage, RegistryUsage, registry_usage, queue=RPC_QUEUE)


async def sweep_forever(deployer: Deployer, *, interval: float) -> None:
    while True:
        try:
            await deployer.sweep()
        except DependencyUnavailable as exc:
            log.warning("sweeper: dependency unavailable", extra={"error": str(exc)})
        await asyncio.sleep(interval)
