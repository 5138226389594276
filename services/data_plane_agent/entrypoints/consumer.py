"""The agent's one entry point: its data plane's durable JetStream consumer.

What is subtle:
- Order is per component: the consumer (`agent-<dp>`: explicit ack, deliver
  all, `max_ack_pending=AGENT_MAX_ACK_PENDING`, `libs.runtime.bus.
  agent_consumer_config`) hands over commands in stream order, and a
  `KeyedRunner` keyed by namespace and component handles each component's
  commands one after another in that order (deploys and removals share one
  subject and one key), up to `concurrency` components at once. One command at
  a time for the whole data plane capped it at one Kubernetes round-trip chain
  per command: about 50 commands a second against the sandbox, a few a second
  against a real API server a continent away. Across a redelivery the order can
  break; the applier's `domain.ordering` (the newest `seq` applied wins) makes
  an older command arriving late `superseded`, never applied over a newer one.
  A consumer made by an older orchestrator (`max_ack_pending=1`) still works,
  one command at a time, until the orchestrator updates it
  (`Bus.ensure_agent_consumer`).
- An agent enrolled with its own NATS user may not create consumers: it only
  binds to the one the orchestrator made, and says so if it is missing.
- Before the first fetch the agent resumes the rollouts it manages (so a
  restart re-reports what it left unfinished).
- Order of a deploy: apply (kept with +WPI while Kubernetes is down), report
  (a final status is stored on JetStream BEFORE the ack), ack, then watch. A
  stop while applying naks the command at once rather than after ack_wait. An
  unreadable command is terminated: it would never get better. One that reads
  but names another data plane or namespace goes to the use cases, which
  refuse it (`domain.trust`): a deploy is then reported `failed` /
  `command_rejected` like any other failure, so the orchestrator learns of it.
- Idle fetches wait a jittered timeout, so many agents do not poll NATS in step.
- Every command must be signed by a key the agent pinned (`libs.contracts.signing`).
  The signature is checked HERE, on the JSON object received, before any use
  case sees the command, and the command is built from that same parsed object,
  so what is verified is what is acted on (and fields a newer orchestrator added
  are covered by the signature without this agent knowing them). Unsigned, an
  unknown key or a bad signature: a deploy is reported `failed` /
  `command_rejected`, a removal is logged, both are acked, nothing is read or
  written in the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from libs.contracts import reasons, signing
from libs.contracts.messages import DeployCommand, RemoveCommand
from libs.runtime.bus import Bus, agent_consumer_config
from libs.runtime.consumers import KeyedRunner, honour_cancellation, settle
from libs.runtime.service import retry_forever

from ..domain.ordering import Outcome
from ..domain.rollout import Rollout
from ..usecases.apply import Applier
from ..usecases.metrics import AgentMetrics
from ..usecases.pacing import KeepAlive, jittered
from ..usecases.remove import Remover
from ..usecases.report import Reporter
from ..usecases.watch import RolloutWatcher

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConsumerMissing(Exception):
    """The agent's durable consumer is gone and its NATS user may not create one."""


@dataclass(frozen=True)
class ConsumerOptions:
    ack_wait_seconds: float = 60.0
    fetch_timeout_seconds: float = 5.0
    create_consumer: bool = True  # False: bind only (an agent with its own NATS user may not create it)
    concurrency: int = 8  # components applied at once (each component's commands stay in order)


@dataclass(frozen=True)
class CommandConsumer:
    bus: Bus
    dataplane_id: str
    options: ConsumerOptions
    applier: Applier
    remover: Remover
    reporter: Reporter
    watcher: RolloutWatcher
    command_keys: tuple[str, ...]  # the orchestrator's public keys this agent pinned (base64)
    metrics: AgentMetrics | None = None

    async def run(self) -> None:
        """Resume the managed rollouts, then take commands until cancelled (NATS outages included)."""
        await retry_forever("resume managed rollouts", self.watcher.resume, delay=1.0)
        concurrency = max(1, self.options.concurrency)
        runner = KeyedRunner(self.handle, key=command_key, concurrency=concurrency, held=2 * concurrency)
        sub: JetStreamContext.PullSubscription | None = None
        try:
            while True:
                honour_cancellation()
                try:
                    room = await runner.wait_for_room()
                    if sub is None:
                        sub = await self._subscribe()
                        log.info("consuming deploy commands", extra={"dataplane_id": self.dataplane_id})
                    msgs = await sub.fetch(room, timeout=jittered(self.options.fetch_timeout_seconds))
                except TimeoutError:  # nats' TimeoutError or the builtin one, both raised by fetch
                    continue
                except Exception as exc:
                    log.warning(
                        "deploy consumer: cannot fetch; retrying",
                        extra={"dataplane_id": self.dataplane_id, "error": repr(exc)},
                    )
                    if sub is not None:
                        with contextlib.suppress(Exception):
                            await sub.unsubscribe()
                        sub = None
                    await asyncio.sleep(1)
                    continue
                for msg in msgs:
                    runner.submit(msg)
        finally:
            await runner.cancel()  # each one naks its command (`_settled`): redelivered at once
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        subjects = self.bus.subjects
        durable = subjects.agent_durable(self.dataplane_id)
        stream = subjects.dataplane_stream.name
        if self.options.create_consumer:
            config = agent_consumer_config(
                subjects, self.dataplane_id, ack_wait_seconds=self.options.ack_wait_seconds
            )
            return await self.bus.js.pull_subscribe(
                subjects.deploy(self.dataplane_id), durable=durable, stream=stream, config=config
            )
        try:
            await self.bus.js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            raise ConsumerMissing(
                f"the consumer {durable} does not exist and this agent may not create it;"
                " the orchestrator creates it when the data plane enrolls"
            ) from None
        return await self.bus.js.pull_subscribe_bind(durable=durable, stream=stream)

    async def handle(self, msg: Msg) -> None:
        doc = _parsed(msg.data)
        kind = doc.get("kind", "deploy") if doc is not None else "unreadable"
        model: type[DeployCommand] | type[RemoveCommand] = (
            RemoveCommand if kind == "remove" else DeployCommand
        )
        cmd = await self._decode(msg, doc, model)
        if cmd is None:
            return
        assert doc is not None
        forged = signing.refusal(doc, self.command_keys)
        if forged is not None:
            await self._reject(msg, cmd, forged)
        elif isinstance(cmd, RemoveCommand):
            await self._remove(msg, cmd)
        else:
            await self._deploy(msg, cmd)

    async def _decode(
        self, msg: Msg, doc: dict[str, object] | None, model: type[DeployCommand] | type[RemoveCommand]
    ) -> DeployCommand | RemoveCommand | None:
        """The command built from the parsed object `doc`, or None once a command that cannot be read
        is terminated."""
        what = "remove" if model is RemoveCommand else "deploy"
        try:
            if doc is None:
                raise ValueError("not a JSON object")
            cmd = model.model_validate(doc)
        except (ValidationError, ValueError) as exc:
            error = str(exc.errors(include_input=False)[:3]) if isinstance(exc, ValidationError) else str(exc)
            log.error(
                f"dropping a {what} command this agent cannot read",
                extra={"dataplane_id": self.dataplane_id, "error": error},
            )
            await settle(msg, "term")
            return None
        return cmd

    async def _reject(self, msg: Msg, cmd: DeployCommand | RemoveCommand, why: str) -> None:
        """A command not signed by a pinned key: report a deploy `command_rejected` (stored before the
        ack, like any final report), log a removal; nothing reaches the cluster."""
        ids = (
            {"teardown_id": cmd.teardown_id}
            if isinstance(cmd, RemoveCommand)
            else {"deployment_id": cmd.deployment_id, "execution_id": cmd.execution_id}
        )
        log.error(
            "refusing a command not signed by the orchestrator",
            extra={"dataplane_id": self.dataplane_id, "kind": cmd.kind, **ids, "error": why},
        )
        if self.metrics:
            self.metrics.commands.labels("rejected").inc()
        if isinstance(cmd, RemoveCommand):
            await settle(msg, "ack")
            return
        refused = Outcome("failed", reason=reasons.COMMAND_REJECTED, message=why)
        await self._settled(msg, lambda _keep_alive: self.reporter.outcome(cmd, refused))

    async def _settled(self, msg: Msg, work: Callable[[KeepAlive], Awaitable[T]]) -> T:
        """`work` (kept alive with +WPI), then ack; a stop meanwhile naks the command at once
        rather than leave it until ack_wait."""
        try:
            done = await work(lambda: settle(msg, "in_progress"))
        except asyncio.CancelledError:
            await settle(msg, "nak")
            raise
        await settle(msg, "ack")
        return done

    async def _deploy(self, msg: Msg, cmd: DeployCommand) -> None:
        async def apply_and_report(keep_alive: KeepAlive) -> tuple[Outcome, Rollout | None]:
            outcome = await self.applier.apply(cmd, keep_alive=keep_alive)
            return outcome, await self.reporter.outcome(cmd, outcome)

        outcome, target = await self._settled(msg, apply_and_report)
        if self.metrics:
            self.metrics.commands.labels(outcome.action).inc()
        log.info(
            "deploy command handled",
            extra={
                "dataplane_id": self.dataplane_id,
                "deployment_id": cmd.deployment_id,
                "kind": cmd.kind,
                "execution_id": cmd.execution_id,
                "seq": cmd.seq,
                "outcome": outcome.action,
            },
        )
        if target is not None:
            await self.watcher.track(target)

    async def _remove(self, msg: Msg, cmd: RemoveCommand) -> None:
        removed = await self._settled(msg, lambda keep_alive: self.remover.remove(cmd, keep_alive=keep_alive))
        if self.metrics:
            self.metrics.commands.labels("removed").inc()
        log.info(
            "component removed",
            extra={
                "dataplane_id": self.dataplane_id,
                "teardown_id": cmd.teardown_id,
                "namespace": cmd.namespace,
                "component": cmd.component,
                "removed": removed,
            },
        )


def command_key(msg: Msg) -> Hashable:
    """A command's order key: its namespace and component (unreadable commands share one key)."""
    doc = _parsed(msg.data)
    if doc is None:
        return None
    return (str(doc.get("namespace")), str(doc.get("component")))


def _parsed(data: bytes) -> dict[str, object] | None:
    """The command's JSON object, or None (not JSON, not an object, nested beyond the parser)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None
