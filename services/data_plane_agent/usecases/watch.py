"""Watching rollouts to a terminal report, one background task per rollout.

What is subtle:
- One watch per key (namespace + object, or the run): a newer deploy of the
  same component cancels the older watch, and the older deployment is reported
  `superseded` unless it had already finished. The same deployment again (a
  redelivery) keeps the running watch.
- A watch wakes on the object's Kubernetes watch events AND on a timer
  (`poll_seconds`): a broken watch makes the agent slower, never wrong. The
  object an event carried is judged as is, without reading it again.
- Pods are read only when they can change the verdict: always for a Job, and
  for a Deployment only while it is progressing (a container stuck in
  ImagePullBackOff fails it now instead of after the 10-minute deadline).
- At start, `resume` watches again every Deployment and Job this data plane
  wrote, so a rollout left unfinished by a stop gets its terminal report.
- A removed component's watches end without a report: the orchestrator
  forgot its deployments.
- A Deployment rolled out by tag is reported `succeeded` with the digest its
  Pods run (`rollout.pulled_digest`), read from the same Pod list: one more
  list only for rollouts by tag, once, at the end.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

from libs.contracts import naming

from ..clients.kube import Kube, KubeRejected, KubeUnavailable
from ..domain import manifests, rollout
from ..domain.rollout import Rollout, Verdict
from .metrics import AgentMetrics
from .report import Reporter

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Watch:
    rollout: Rollout
    finished: bool = False
    task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@dataclass(kw_only=True)
class RolloutWatcher:
    kube: Kube
    reporter: Reporter
    dataplane_id: str
    poll_seconds: float
    metrics: AgentMetrics | None = None
    _watches: dict[tuple[str, str, str], _Watch] = field(default_factory=dict, init=False)

    @property
    def watching(self) -> int:
        return sum(1 for w in self._watches.values() if w.running)

    async def track(self, target: Rollout) -> None:
        old = self._watches.get(target.key)
        if old is not None and old.running:
            if old.rollout.same_as(target):
                return  # already watching this one (a redelivery)
            await old.cancel()
            if not old.finished:
                old.finished = True
                self.reporter.watched(
                    old.rollout,
                    Verdict("superseded", message=f"deployment {target.deployment_id} replaced it"),
                )
        watch = _Watch(target)
        self._watches[target.key] = watch
        watch.task = asyncio.create_task(
            self._watch(watch),
            name=f"agent-rollout-{self.dataplane_id}-{target.namespace}-{target.object_name}",
        )

    async def forget_component(self, namespace: str, component: str) -> None:
        """Stop watching a removed component's rollouts, reporting nothing."""
        for key, watch in list(self._watches.items()):
            if watch.rollout.namespace == namespace and watch.rollout.component == component:
                watch.finished = True
                await watch.cancel()
                self._watches.pop(key, None)

    async def resume(self) -> None:
        """Watch again what this agent manages, so every rollout gets a terminal report after a restart."""
        resumed = 0
        for kind in ("Deployment", "Job"):
            try:
                mine = {naming.MANAGED_BY: "landfall", naming.LABEL_DATAPLANE: self.dataplane_id}
                found = await self.kube.list(kind, None, mine)
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
                    await self.track(target)
                    resumed += 1
        if resumed:
            log.info("resumed watching rollouts", extra={"dataplane_id": self.dataplane_id, "count": resumed})

    async def stop(self) -> None:
        watches = list(self._watches.values())
        await asyncio.gather(*(w.cancel() for w in watches))

    async def _watch(self, watch: _Watch) -> None:
        target = watch.rollout
        if self.metrics:
            self.metrics.watching.inc()
        try:
            async with self.kube.changes(target.object_kind, target.namespace, target.object_name) as feed:
                seen: manifests.Body | None = None  # the object as the last watch event carried it
                while True:
                    try:
                        verdict: Verdict | None = await self._evaluate(target, seen)
                    except (KubeUnavailable, KubeRejected) as exc:
                        log.warning(
                            "cannot read rollout state; retrying",
                            extra={"deployment_id": target.deployment_id, "error": str(exc)},
                        )
                        verdict = None
                    if verdict is not None and verdict.terminal:
                        watch.finished = True
                        self.reporter.watched(target, verdict)
                        return
                    seen = feed.latest() if await feed.wait(self.poll_seconds) else None
        finally:
            if self.metrics:
                self.metrics.watching.dec()
            if self._watches.get(target.key) is watch:
                del self._watches[target.key]

    async def _evaluate(self, target: Rollout, seen: manifests.Body | None = None) -> Verdict:
        obj = (
            seen
            if seen is not None
            else await self.kube.get(target.object_kind, target.namespace, target.object_name)
        )
        gone = rollout.replaced(target, obj)
        if gone is not None:
            return gone
        assert obj is not None  # `replaced` judges a missing object
        if target.kind == "run":
            pods = await self.kube.list("Pod", target.namespace, target.pod_labels)
            mine = rollout.pods_of(pods, execution_id=target.execution_id, job_name=target.object_name)
            return rollout.job_verdict(obj, mine)
        verdict = rollout.deployment_verdict(obj)
        if verdict.status == "progressing":
            pods = await self.kube.list("Pod", target.namespace, target.pod_labels)
            failure = rollout.pod_failure(rollout.pods_of(pods, deployment_id=target.deployment_id))
            if failure is not None:
                return failure
        if verdict.status == "succeeded" and target.by_tag:
            pods = await self.kube.list("Pod", target.namespace, target.pod_labels)
            mine = rollout.pods_of(pods, deployment_id=target.deployment_id)
            component = target.component or target.object_name
            return replace(verdict, digest=rollout.pulled_digest(mine, component))
        return verdict
