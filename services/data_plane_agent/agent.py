"""One data plane's agent: deploy commands in, Kubernetes objects out, rollout truth back.

How a command flows:
1. A durable JetStream pull consumer (`agent-<dp>`, explicit ack, deliver all,
   `max_ack_pending=1`) hands over ONE command at a time, in stream order, so an
   agent that was offline catches up in the order the orchestrator decided.
2. `_apply` reads the primary object's `landfall.dev/deployment-seq` first:
   a higher seq there means this command is old (report `superseded`, write
   nothing); the same deployment id means a redelivery (write nothing, just
   watch and report again). Otherwise it writes the objects: the ones the primary
   object needs (pull Secret, Service, Ingress) concurrently, the primary object
   last (its seq marker means "all applied"), then drops a pull Secret no longer used.
3. Kubernetes down is retried in place (the message is kept with +WPI), which
   holds back later commands too: order beats latency. A request the API server
   rejects for good fails that deployment and moves on.
4. The command is acked, then the rollout is watched in a background task. A
   newer deploy of the same component cancels the older watch; the older
   deployment is reported `superseded` unless it had already finished.

Reports go through one queue per agent, published with `publish_durable` and
`Nats-Msg-Id = <deployment>:<status>` (runs: `<deployment>:<execution>:<status>`),
retried until JetStream stores them: a terminal report is never dropped while
the agent runs, and at start the agent re-reports the rollouts it manages
(JetStream and the orchestrator drop duplicates).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from libs.contracts import naming
from libs.contracts.messages import (
    AgentHeartbeat,
    DeployCommand,
    RemoveCommand,
    RolloutReport,
    command_kind,
    utcnow,
)
from libs.runtime.bus import Bus, agent_consumer_config
from libs.runtime.service import retry_forever

from . import manifests, rollout
from .identity import Identity, SealedSecretError
from .kube import Conflict, Kube, KubeRejected, KubeUnavailable
from .manifests import Kind
from .rollout import Verdict

log = logging.getLogger(__name__)

T = TypeVar("T")

ReportStatus = Literal["progressing", "succeeded", "failed", "superseded"]


@dataclass(frozen=True)
class AgentOptions:
    version: str = "0.1.0"
    heartbeat_interval_seconds: float = 5.0
    rollout_poll_seconds: float = 2.0
    ack_wait_seconds: float = 60.0
    fetch_timeout_seconds: float = 5.0
    create_consumer: bool = True  # False: bind only (an agent with its own NATS user may not create it)


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.commands = Counter(
            "landfall_agent_commands_total", "deploy commands handled", ["outcome"], registry=registry
        )
        self.reports = Counter(
            "landfall_agent_reports_total", "rollout reports stored", ["status"], registry=registry
        )
        self.watching = Gauge("landfall_agent_rollouts_watched", "rollouts being watched", registry=registry)


class ConsumerMissing(Exception):
    """The agent's durable consumer is gone and its NATS user may not create one."""


@dataclass(frozen=True)
class Outcome:
    action: Literal["applied", "redelivered", "superseded", "failed"]
    applied_at: datetime | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(eq=False)
class Rollout:
    """A Deployment rollout (kind=deploy) or a Job (kind=run) being watched to a terminal status."""

    kind: Literal["deploy", "run"]
    deployment_id: str
    execution_id: str | None
    seq: int | None
    namespace: str
    object_kind: Kind
    object_name: str
    pod_labels: dict[str, str]
    applied_at: datetime | None = None
    finished: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        if self.kind == "run":
            return ("run", self.namespace, self.execution_id or self.object_name)
        return ("deploy", self.namespace, self.object_name)

    @classmethod
    def from_command(cls, cmd: DeployCommand, applied_at: datetime | None) -> Rollout:
        kind, name = manifests.primary(cmd)
        return cls(
            kind=cmd.kind,
            deployment_id=cmd.deployment_id,
            execution_id=cmd.execution_id,
            seq=cmd.seq,
            namespace=cmd.namespace,
            object_kind=kind,
            object_name=name,
            pod_labels=manifests.selector(cmd),
            applied_at=applied_at,
        )

    @classmethod
    def from_object(cls, kind: Kind, obj: manifests.Body) -> Rollout | None:
        meta = obj.get("metadata") or {}
        mark = manifests.marker(obj)
        labels = meta.get("labels") or {}
        if not mark.deployment_id or not meta.get("name") or not meta.get("namespace"):
            return None
        return cls(
            kind="run" if kind == "Job" else "deploy",
            deployment_id=mark.deployment_id,
            execution_id=mark.execution_id,
            seq=mark.seq,
            namespace=meta["namespace"],
            object_kind=kind,
            object_name=meta["name"],
            pod_labels={
                k: labels[k]
                for k in (
                    naming.LABEL_ORG,
                    naming.LABEL_PROJECT,
                    naming.LABEL_COMPONENT,
                    naming.LABEL_ENVIRONMENT,
                )
                if k in labels
            },
        )


def report_msg_id(report: RolloutReport) -> str:
    if report.kind == "run":
        return f"{report.deployment_id}:{report.execution_id}:{report.status}"
    return f"{report.deployment_id}:{report.status}"


class Agent:
    def __init__(
        self,
        *,
        identity: Identity,
        bus: Bus,
        kube: Kube,
        options: AgentOptions | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.identity = identity
        self.dataplane_id = identity.dataplane_id
        self.bus = bus
        self.kube = kube
        self.options = options or AgentOptions()
        self.metrics = metrics
        self._rollouts: dict[tuple[str, str, str], Rollout] = {}
        self._reports: asyncio.Queue[tuple[RolloutReport, asyncio.Future[None]]] = asyncio.Queue()
        self._namespaces: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._reporter: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        dp = self.dataplane_id
        self._reporter = asyncio.create_task(self._report_loop(), name=f"agent-reports-{dp}")
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name=f"agent-heartbeat-{dp}"),
            asyncio.create_task(self._consume_loop(), name=f"agent-consumer-{dp}"),
        ]

    async def stop(self, *, grace_seconds: float = 5.0) -> None:
        """Stop taking commands, stop watching, then give queued reports `grace_seconds` to be stored."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        watches = [r.task for r in self._rollouts.values() if r.task is not None]
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        if self._reporter is not None:
            try:
                async with asyncio.timeout(grace_seconds):
                    await self._reports.join()
            except TimeoutError:
                log.warning(
                    "stopping with unsent reports",
                    extra={"dataplane_id": self.dataplane_id, "count": self._reports.qsize()},
                )
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)
            self._reporter = None

    @property
    def watching(self) -> int:
        return sum(1 for r in self._rollouts.values() if r.task is not None and not r.task.done())

    # --- the command consumer --------------------------------------------------------------
    async def _subscribe(self) -> nats.js.JetStreamContext.PullSubscription:
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

    async def _consume_loop(self) -> None:
        await retry_forever("resume managed rollouts", self._resume, delay=1.0)
        sub: nats.js.JetStreamContext.PullSubscription | None = None
        try:
            while True:
                try:
                    if sub is None:
                        sub = await self._subscribe()
                        log.info("consuming deploy commands", extra={"dataplane_id": self.dataplane_id})
                    # The same jitter for idle polls: many agents need not ask NATS in step.
                    msgs = await sub.fetch(1, timeout=_jittered(self.options.fetch_timeout_seconds))
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
                    await self._handle(msg)
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _handle(self, msg: Msg) -> None:
        if command_kind(msg.data) == "remove":
            await self._handle_remove(msg)
            return
        try:
            cmd = DeployCommand.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error(
                "dropping a deploy command this agent cannot read",
                extra={"dataplane_id": self.dataplane_id, "error": str(exc.errors(include_input=False)[:3])},
            )
            await _settle(msg.term)
            return
        if cmd.dataplane_id != self.dataplane_id:
            log.error(
                "dropping a deploy command for another data plane",
                extra={"dataplane_id": self.dataplane_id, "deployment_id": cmd.deployment_id},
            )
            await _settle(msg.term)
            return
        try:
            outcome = await self._apply_until_done(cmd, msg)
            target = await self._report_outcome(cmd, outcome)
        except asyncio.CancelledError:
            await _settle(msg.nak)  # stopping: hand it back now rather than after ack_wait
            raise
        await _settle(msg.ack)
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
            await self._track(target)

    async def _while_kube_unavailable(
        self, msg: Msg, work: Callable[[], Awaitable[T]], *, waiting: str, ids: dict[str, str]
    ) -> T:
        """`work`, again and again while the Kubernetes API is unreachable. The message is kept
        (+WPI) meanwhile, which holds back later commands too: order beats latency."""
        delay = 0.5
        while True:
            try:
                return await work()
            except KubeUnavailable as exc:
                log.warning(waiting, extra={**ids, "error": str(exc)})
            await _settle(msg.in_progress)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _apply_until_done(self, cmd: DeployCommand, msg: Msg) -> Outcome:
        try:
            return await self._while_kube_unavailable(
                msg,
                lambda: self._apply(cmd),
                waiting="kubernetes unavailable; the command waits",
                ids={"deployment_id": cmd.deployment_id},
            )
        except KubeRejected as exc:
            return Outcome(
                "failed", reason="apply_rejected", message=f"{exc.status} {exc.reason}: {exc.message}"
            )
        except SealedSecretError as exc:
            return Outcome("failed", reason=exc.reason, message=exc.message)
        except Exception as exc:  # a bug must not block every later command
            log.exception("applying a deploy command failed", extra={"deployment_id": cmd.deployment_id})
            return Outcome("failed", reason="agent_error", message=type(exc).__name__)

    async def _apply(self, cmd: DeployCommand) -> Outcome:
        kind, name = manifests.primary(cmd)
        current = await self.kube.get(kind, cmd.namespace, name)
        if current is None:
            # Nothing applied yet, or the component was deleted: then a tombstone says since when.
            tomb = await self.kube.get("ConfigMap", cmd.namespace, manifests.tombstone_name(cmd.component))
            removed = manifests.marker(tomb).seq if tomb is not None else None
            if removed is not None and removed > cmd.seq:
                return Outcome("superseded", message="the component was deleted after this deployment")
        else:
            mark = manifests.marker(current)
            if cmd.kind == "run":
                if mark.execution_id not in (None, cmd.execution_id):
                    return Outcome(
                        "failed", reason="job_name_taken", message=f"Job {name} belongs to another run"
                    )
                return Outcome("redelivered")
            if mark.seq is not None and mark.seq > cmd.seq:
                return Outcome(
                    "superseded",
                    message=f"deployment {mark.deployment_id} (seq {mark.seq}) is already applied",
                )
            if mark.deployment_id == cmd.deployment_id:
                return Outcome("redelivered")
        dockerconfig = self.identity.open(cmd.pull_secret) if cmd.pull_secret is not None else None
        objects = manifests.plan(cmd, self.dataplane_id, dockerconfigjson=dockerconfig)
        del dockerconfig
        try:
            # An earlier deploy's pull Secret is only worth looking for if that deploy used one.
            used_secret = current is None or manifests.refers_to_pull_secret(current, cmd.component)
            return await self._write(
                cmd, objects, primary_exists=current is not None, may_have_pull_secret=used_secret
            )
        except KubeRejected as exc:
            if exc.status != 404 or cmd.namespace not in self._namespaces:
                raise
            self._namespaces.discard(cmd.namespace)  # someone deleted the namespace: make it again
            return await self._write(cmd, objects, primary_exists=None)

    async def _write(
        self,
        cmd: DeployCommand,
        objects: list[manifests.Obj],
        *,
        primary_exists: bool | None,
        may_have_pull_secret: bool = True,
    ) -> Outcome:
        """Write the objects: those before the primary one (pull Secret, Service, Ingress) at once,
        as none refers to another; then the primary object, LAST, because its seq marker says
        the whole set is applied; then the removal of a pull Secret no longer used.

        Whether the primary object exists (just read) stands for the whole set: an earlier
        deploy wrote them together. A wrong guess costs a 404 or 409 and a retry, no more."""
        await self._ensure_namespace(cmd)
        *before, primary = objects
        outcomes = await asyncio.gather(
            *(self.kube.apply(obj.kind, cmd.namespace, obj.body, exists=primary_exists) for obj in before),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if primary.kind == "Job":
            try:
                await self.kube.create("Job", cmd.namespace, primary.body)
            except Conflict:
                return Outcome("redelivered")
        else:
            await self.kube.apply(primary.kind, cmd.namespace, primary.body, exists=primary_exists)
        if cmd.pull_secret is None and cmd.kind == "deploy" and may_have_pull_secret:
            await self._drop_pull_secret(cmd)
        return Outcome("applied", applied_at=utcnow())

    # --- removing a deleted component ------------------------------------------------------
    async def _handle_remove(self, msg: Msg) -> None:
        try:
            cmd = RemoveCommand.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error(
                "dropping a remove command this agent cannot read",
                extra={"dataplane_id": self.dataplane_id, "error": str(exc.errors(include_input=False)[:3])},
            )
            await _settle(msg.term)
            return
        if cmd.dataplane_id != self.dataplane_id:
            log.error(
                "dropping a remove command for another data plane",
                extra={"dataplane_id": self.dataplane_id, "teardown_id": cmd.teardown_id},
            )
            await _settle(msg.term)
            return
        try:
            removed = await self._while_kube_unavailable(
                msg,
                lambda: self._remove(cmd),
                waiting="kubernetes unavailable; the removal waits",
                ids={"teardown_id": cmd.teardown_id},
            )
        except KubeRejected as exc:  # e.g. RBAC without delete: say so, do not block later commands
            log.error(
                "the API server refused a removal; remove the objects by hand",
                extra={
                    "teardown_id": cmd.teardown_id,
                    "namespace": cmd.namespace,
                    "component": cmd.component,
                    "error": f"{exc.status} {exc.reason}: {exc.message}",
                },
            )
            removed = []
        except asyncio.CancelledError:
            await _settle(msg.nak)
            raise
        await _settle(msg.ack)
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

    async def _remove(self, cmd: RemoveCommand) -> list[str]:
        """Stop watching the component, leave a tombstone, then delete what Landfall applied for it
        (objects with its labels, written by this data plane, not newer than the removal)."""
        for key, target in list(self._rollouts.items()):
            component = target.pod_labels.get(naming.LABEL_COMPONENT)
            if target.namespace == cmd.namespace and component == cmd.component:
                target.finished = True  # the orchestrator forgot the deployment: nothing to report
                if target.task is not None:
                    target.task.cancel()
                    await asyncio.gather(target.task, return_exceptions=True)
                self._rollouts.pop(key, None)
        if cmd.namespace not in self._namespaces:
            await self.kube.ensure_namespace(manifests.namespace(cmd))
            self._namespaces.add(cmd.namespace)
        tomb = manifests.tombstone(cmd, self.dataplane_id)
        await self.kube.apply(tomb.kind, cmd.namespace, tomb.body)
        removed: list[str] = []
        selector = manifests.labels(cmd)
        for kind in manifests.REMOVABLE:
            for obj in await self.kube.list(kind, cmd.namespace, selector):
                mark = manifests.marker(obj)
                if mark.dataplane_id not in (None, self.dataplane_id):
                    continue
                if mark.seq is not None and mark.seq > cmd.seq:
                    continue  # a component re-created under the same name deployed since
                name = str((obj.get("metadata") or {}).get("name", ""))
                if name and await self.kube.delete(kind, cmd.namespace, name):
                    removed.append(f"{kind}/{name}")
        return removed

    async def _ensure_namespace(self, cmd: DeployCommand) -> None:
        if cmd.namespace in self._namespaces:
            return
        await self.kube.ensure_namespace(manifests.namespace(cmd))
        self._namespaces.add(cmd.namespace)

    async def _drop_pull_secret(self, cmd: DeployCommand) -> None:
        """The registry became anonymous (or vendor): remove the credential an earlier deploy left."""
        name = manifests.pull_secret_name(cmd.component)
        secret = await self.kube.get("Secret", cmd.namespace, name)
        labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
        if secret is not None and labels.get(naming.MANAGED_BY) == "landfall":
            await self.kube.delete("Secret", cmd.namespace, name)

    async def _report_outcome(self, cmd: DeployCommand, outcome: Outcome) -> Rollout | None:
        """Report what applying decided; returns the rollout to watch, if any.

        A status that is final already (failed, superseded, a CronJob or a job template in
        place) is waited for until JetStream stored it, BEFORE the command is acked: if the
        agent stops in between, the command comes back and the report is made again.
        """
        if outcome.action in ("failed", "superseded"):
            await self._report(
                cmd.kind,
                cmd.deployment_id,
                cmd.execution_id,
                outcome.action,
                reason=outcome.reason,
                message=outcome.message,
            )
            return None
        if cmd.kind == "deploy" and cmd.component_type in ("scheduled-task", "manual-task"):
            what = (
                "the CronJob is in place"
                if cmd.component_type == "scheduled-task"
                else "the job template is stored"
            )
            await self._report(
                "deploy", cmd.deployment_id, None, "succeeded", message=what, applied_at=outcome.applied_at
            )
            return None
        if outcome.action == "applied":
            self._report(
                cmd.kind, cmd.deployment_id, cmd.execution_id, "progressing", applied_at=outcome.applied_at
            )
        return Rollout.from_command(cmd, outcome.applied_at)

    # --- watching rollouts -----------------------------------------------------------------
    async def _track(self, target: Rollout) -> None:
        old = self._rollouts.get(target.key)
        if old is not None and old.task is not None and not old.task.done():
            if old.deployment_id == target.deployment_id and old.execution_id == target.execution_id:
                return  # already watching this one (a redelivery)
            old.task.cancel()
            await asyncio.gather(old.task, return_exceptions=True)
            if not old.finished:
                old.finished = True
                self._report(
                    old.kind,
                    old.deployment_id,
                    old.execution_id,
                    "superseded",
                    message=f"deployment {target.deployment_id} replaced it",
                    applied_at=old.applied_at,
                )
        self._rollouts[target.key] = target
        target.task = asyncio.create_task(
            self._watch(target),
            name=f"agent-rollout-{self.dataplane_id}-{target.namespace}-{target.object_name}",
        )

    async def _watch(self, target: Rollout) -> None:
        if self.metrics:
            self.metrics.watching.inc()
        try:
            async with self.kube.changes(target.object_kind, target.namespace, target.object_name) as feed:
                seen: manifests.Body | None = None  # the object as the last watch event carried it
                while True:
                    try:
                        verdict = await self._evaluate(target, seen)
                    except (KubeUnavailable, KubeRejected) as exc:
                        log.warning(
                            "cannot read rollout state; retrying",
                            extra={"deployment_id": target.deployment_id, "error": str(exc)},
                        )
                        verdict = None
                    if verdict is not None and verdict.terminal:
                        target.finished = True
                        self._report(
                            target.kind,
                            target.deployment_id,
                            target.execution_id,
                            verdict.status,
                            reason=verdict.reason,
                            message=verdict.message,
                            applied_at=target.applied_at,
                        )
                        return
                    seen = feed.latest() if await feed.wait(self.options.rollout_poll_seconds) else None
        finally:
            if self.metrics:
                self.metrics.watching.dec()
            if self._rollouts.get(target.key) is target:
                del self._rollouts[target.key]

    async def _evaluate(self, target: Rollout, seen: manifests.Body | None = None) -> Verdict:
        obj = (
            seen
            if seen is not None
            else await self.kube.get(target.object_kind, target.namespace, target.object_name)
        )
        if obj is None:
            return Verdict("failed", reason="deleted", message=f"the {target.object_kind} was deleted")
        mark = manifests.marker(obj)
        if target.kind == "run":
            if mark.execution_id not in (None, target.execution_id):
                return Verdict("failed", reason="deleted", message="the Job was replaced by another run")
            pods = await self.kube.list("Pod", target.namespace, target.pod_labels)
            mine = rollout.pods_of(pods, execution_id=target.execution_id, job_name=target.object_name)
            return rollout.job_verdict(obj, mine)
        if mark.deployment_id != target.deployment_id:
            return Verdict("superseded", message=f"deployment {mark.deployment_id} replaced it")
        verdict = rollout.deployment_verdict(obj)
        if verdict.status == "progressing":
            pods = await self.kube.list("Pod", target.namespace, target.pod_labels)
            failure = rollout.pod_failure(rollout.pods_of(pods, deployment_id=target.deployment_id))
            if failure is not None:
                return failure
        return verdict

    async def _resume(self) -> None:
        """Watch again what this agent manages, so every rollout gets a terminal report after a restart."""
        resumed = 0
        for kind in ("Deployment", "Job"):
            try:
                found = await self.kube.list(kind, None, {naming.MANAGED_BY: "landfall"})
            except KubeRejected as exc:  # e.g. RBAC without cluster-wide list: start anyway
                log.warning(
                    "cannot list managed objects; unfinished rollouts are not re-reported",
                    extra={"dataplane_id": self.dataplane_id, "kind": kind, "error": str(exc)},
                )
                continue
            for obj in found:
                if manifests.marker(obj).dataplane_id != self.dataplane_id:
                    continue
                target = Rollout.from_object(kind, obj)
                if target is not None:
                    await self._track(target)
                    resumed += 1
        if resumed:
            log.info("resumed watching rollouts", extra={"dataplane_id": self.dataplane_id, "count": resumed})

    # --- reports and heartbeats ------------------------------------------------------------
    def _report(
        self,
        kind: Literal["deploy", "run"],
        deployment_id: str,
        execution_id: str | None,
        status: ReportStatus,
        *,
        reason: str | None = None,
        message: str | None = None,
        applied_at: datetime | None = None,
    ) -> asyncio.Future[None]:
        """Queue a report; the future completes once JetStream stored it (awaiting it is optional)."""
        report = RolloutReport(
            kind=kind,
            deployment_id=deployment_id,
            execution_id=execution_id if kind == "run" else None,
            dataplane_id=self.dataplane_id,
            status=status,
            reason=reason,
            message=message,
            applied_at=applied_at,
            reported_at=utcnow(),
        )
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reports.put_nowait((report, stored))
        return stored

    async def _report_loop(self) -> None:
        subject = self.bus.subjects.status(self.dataplane_id)
        while True:
            report, stored = await self._reports.get()
            delay = 0.2
            while True:
                try:
                    await self.bus.publish_durable(subject, report, msg_id=report_msg_id(report))
                    break
                except Exception as exc:  # NATS down: keep the report, try again
                    log.warning(
                        "cannot store a rollout report; retrying",
                        extra={
                            "deployment_id": report.deployment_id,
                            "status": report.status,
                            "error": repr(exc),
                        },
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            if not stored.done():
                stored.set_result(None)
            if self.metrics:
                self.metrics.reports.labels(report.status).inc()
            log.info(
                "reported",
                extra={
                    "deployment_id": report.deployment_id,
                    "execution_id": report.execution_id,
                    "status": report.status,
                    "reason": report.reason,
                },
            )
            self._reports.task_done()

    async def _heartbeat_loop(self) -> None:
        subject = self.bus.subjects.heartbeat(self.dataplane_id)
        while True:
            try:
                beat = AgentHeartbeat(
                    dataplane_id=self.dataplane_id, version=self.options.version, sent_at=utcnow()
                )
                await self.bus.publish(subject, beat)
            except Exception as exc:
                log.warning("heartbeat not sent", extra={"error": repr(exc)})
            # Up to 20 % early, at random: agents started together (after an outage, or many in one
            # process) drift apart instead of beating, and being written, all in the same instant.
            await asyncio.sleep(_jittered(self.options.heartbeat_interval_seconds))


def _jittered(seconds: float) -> float:
    """`seconds`, up to 20 % less at random (timing jitter, not a secret)."""
    return seconds * random.uniform(0.8, 1.0)  # noqa: S311


async def _settle(action: Callable[[], Awaitable[None]]) -> None:
    """Ack/term/+WPI are best effort: if one is lost, the command comes back and is recognised."""
    try:
        await action()
    except Exception as exc:
        log.warning("could not settle a deploy command", extra={"error": repr(exc)})
