"""Rollout reports: one queue per agent, stored on JetStream, retried until they are.

What is subtle:
- Reports are published with `publish_durable` and `Nats-Msg-Id =
  <deployment>:<status>` (runs: `<deployment>:<execution>:<status>`): a report
  made twice (a redelivered command, a resumed watch after a restart) is
  dropped by JetStream's duplicate window and by the orchestrator's state
  machine, so the agent may always report again rather than risk not at all.
- While NATS is down a report waits in the queue (retried with backoff up to
  5 s); a terminal report is never dropped while the agent runs. At stop, the
  queue gets a grace period to drain.
- `report` hands back a future that completes once JetStream stored the
  report. `outcome` waits for it when the status is already final (failed,
  superseded, a CronJob or a job template in place) so that the command is
  acked only AFTER its report is stored: if the agent stops in between, the
  command comes back and the report is made again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from libs.contracts.messages import DeployCommand, ReportStatus, RolloutReport, utcnow
from libs.runtime.bus import Bus

from ..domain.ordering import Outcome
from ..domain.rollout import Rollout, Verdict
from .metrics import AgentMetrics

log = logging.getLogger(__name__)

LOGGED = {"deployment_id", "execution_id", "status", "reason"}  # of a report, once stored


def report_msg_id(report: RolloutReport) -> str:
    if report.kind == "run":
        return f"{report.deployment_id}:{report.execution_id}:{report.status}"
    return f"{report.deployment_id}:{report.status}"


class Reporter:
    def __init__(self, *, bus: Bus, dataplane_id: str, metrics: AgentMetrics | None = None) -> None:
        self._bus = bus
        self._dataplane_id = dataplane_id
        self._metrics = metrics
        self._queue: asyncio.Queue[tuple[RolloutReport, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"agent-reports-{self._dataplane_id}")

    async def stop(self, *, grace_seconds: float) -> None:
        """Give queued reports `grace_seconds` to be stored, then stop."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(grace_seconds):
                await self._queue.join()
        except TimeoutError:
            log.warning(
                "stopping with unsent reports",
                extra={"dataplane_id": self._dataplane_id, "count": self._queue.qsize()},
            )
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def report(
        self, about: DeployCommand | Rollout, verdict: Verdict, *, applied_at: datetime | None = None
    ) -> asyncio.Future[None]:
        """Queue a report; the future completes once JetStream stored it (awaiting it is optional)."""
        report = RolloutReport(
            kind=about.kind,
            deployment_id=about.deployment_id,
            execution_id=about.execution_id if about.kind == "run" else None,
            dataplane_id=self._dataplane_id,
            status=verdict.status,
            reason=verdict.reason,
            message=verdict.message,
            applied_at=applied_at,
            digest=verdict.digest,
            reported_at=utcnow(),
        )
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((report, stored))
        return stored

    def watched(self, rollout: Rollout, verdict: Verdict) -> asyncio.Future[None]:
        """`report` what watching `rollout` found, with when it was applied."""
        return self.report(rollout, verdict, applied_at=rollout.applied_at)

    async def outcome(self, cmd: DeployCommand, outcome: Outcome) -> Rollout | None:
        """Report what applying decided; returns the rollout to watch, if any (see the module docstring)."""
        if outcome.action in ("failed", "superseded"):
            status: ReportStatus = "failed" if outcome.action == "failed" else "superseded"
            await self.report(cmd, Verdict(status, reason=outcome.reason, message=outcome.message))
            return None
        if cmd.kind == "deploy" and cmd.component_type in ("scheduled-task", "manual-task"):
            what = (
                "the CronJob is in place"
                if cmd.component_type == "scheduled-task"
                else "the job template is stored"
            )
            await self.report(cmd, Verdict("succeeded", message=what), applied_at=outcome.applied_at)
            return None
        if outcome.action == "applied":
            self.report(cmd, Verdict("progressing", message=outcome.message), applied_at=outcome.applied_at)
        return Rollout.from_command(cmd, outcome.applied_at)

    async def _run(self) -> None:
        subject = self._bus.subjects.status(self._dataplane_id)
        while True:
            report, stored = await self._queue.get()
            await self._store(subject, report)
            if not stored.done():
                stored.set_result(None)
            if self._metrics:
                self._metrics.reports.labels(report.status).inc()
            log.info("reported", extra=report.model_dump(include=LOGGED))
            self._queue.task_done()

    async def _store(self, subject: str, report: RolloutReport) -> None:
        delay = 0.2
        while True:
            try:
                await self._bus.publish_durable(subject, report, msg_id=report_msg_id(report))
                return
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
