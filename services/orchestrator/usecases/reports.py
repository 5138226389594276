"""Reports: what an agent says about a rollout (or a run) moves its deployment (or execution) forward.

What is subtle: a report is trusted only for work that was sent to the data
plane it names (the consumer has checked that it came on that plane's own
subject); reports arrive late and more than once, and a move the state machine
refuses is simply nothing (logged with `applied: false`).

Two things follow from a deploy's report besides its status:

* The digest the cluster pulled (a Pod's `imageID`), for a deployment sent by tag (a vendor
  registry): kept as its digest when it has none, so history, promotion and redeploy pin it.
* Auto-rollback: a rollout that fails, in an environment whose current config says
  `auto_rollback`, records a deployment (`source: rollback`) of the environment's last succeeded
  image by digest with *that* deployment's config version, and the failed one names it in
  `rolled_back_by`. The failed deployment stays `failed` with its reason (CI long-polls that id,
  never the rollback). A rollback that fails is not rolled back (no loop); nothing succeeded
  before, or a newer deployment already on its way, means no rollback, and a note says so.
  Exactly once: in one transaction, the claim (`rolled_back_by` set while NULL) and the recording of
  the rollback; a second handler of the same report (a redelivery, whose status move is refused, or
  another replica, which waits on the row lock) finds the claim taken and does nothing, and a
  crash in between leaves neither, so the redelivered report does it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError

from libs.contracts.config import WorkloadConfig
from libs.contracts.messages import RolloutReport
from libs.oci.reference import InvalidReference, validate_digest
from services.orchestrator.clients.gateways import Gateways
from services.orchestrator.domain.records import Deployment
from services.orchestrator.domain.rules import execution_status_for
from services.orchestrator.store import Store
from services.orchestrator.usecases.executions import move_execution
from services.orchestrator.usecases.recording import Recorder, asked_now

log = logging.getLogger(__name__)

NOTE_REPORTED_DIGEST: Final = "digest as pulled by the data plane"
NOTE_NOT_AFTER_ROLLBACK: Final = "not rolled back: it was a rollback itself"


class _NoRollback(Exception):
    """Found after the claim: no rollback after all (undo the claim), with a note or none."""

    def __init__(self, note: str | None) -> None:
        super().__init__(note)
        self.note = note


@dataclass(kw_only=True, eq=False)
class Reports:
    store: Store
    gateways: Gateways
    recorder: Recorder | None = None  # None: no auto-rollback (tests of reports alone)

    async def apply(self, report: RolloutReport) -> None:
        if report.kind == "run":
            await self._apply_run(report)
            return
        digest_kept = await self._keep_digest(report)
        updated = await self.store.now.deployments.apply_report(report)
        log.info(
            "rollout report",
            extra={
                "deployment_id": report.deployment_id,
                "status": report.status,
                "applied": updated is not None,
            },
        )
        changed = updated or digest_kept
        if changed is not None:
            await self.gateways.deployment_changed(changed)
        if report.status == "failed":
            failed = updated or await self.store.now.deployments.get(report.deployment_id)
            if (
                failed is not None
                and failed.status == "failed"
                and failed.dataplane_id == report.dataplane_id
            ):
                await self.roll_back(failed)

    async def _keep_digest(self, report: RolloutReport) -> Deployment | None:
        if report.digest is None:
            return None
        try:
            digest = validate_digest(report.digest)
        except InvalidReference:
            log.warning("report with an invalid digest", extra={"deployment_id": report.deployment_id})
            return None
        return await self.store.now.deployments.set_reported_digest(
            report.deployment_id, dataplane_id=report.dataplane_id, digest=digest, note=NOTE_REPORTED_DIGEST
        )

    async def roll_back(self, failed: Deployment) -> Deployment | None:
        """Auto-rollback of a failed rollout (see the module docstring); the rollback, or None."""
        if self.recorder is None or not await self._auto_rollback(failed):
            return None
        deployments = self.store.now.deployments
        if failed.rolled_back_by is not None:
            return None  # done before: this is a redelivered report
        if failed.source == "rollback":
            await self._note(failed, NOTE_NOT_AFTER_ROLLBACK)
            return None
        target = await deployments.rollback_target(failed)
        if target is None:
            await self._note(failed, f"not rolled back: nothing succeeded in {failed.environment} before it")
            return None
        component = await self.store.now.components.get(failed.org, failed.project, failed.component)
        environments = await self.store.now.environments.of_org(failed.org)
        environment = next((e for e in environments if e.name == failed.environment), None)
        if component is None or component.id != failed.component_id or environment is None:
            return None  # deleted meanwhile: nothing to roll back to
        notes = [f"rolled back from {failed.id}: {failed.reason or 'failed'}; runs {target.id} again"]
        # target.config_version None (it ran before the environment had a config): the current one
        new = asked_now(
            component,
            environment,
            target.image,
            target.digest,
            source="rollback",
            notes=notes,
            config_version=target.config_version,
        )
        try:
            async with self.store.transaction() as tx:
                claimed = await tx.deployments.claim_rollback(failed, new.id)
                if claimed is None:  # a redelivery of this report, or another replica, did it
                    return None
                newer = await tx.deployments.newer_than(failed)
                if newer is not None:  # someone deployed since: that one decides what runs
                    raise _NoRollback(f"not rolled back: {newer} was deployed after it")
                recorded = await tx.deployments.record(new)
                if recorded is None:
                    raise _NoRollback(None)  # the component was deleted meanwhile
        except _NoRollback as refused:  # the claim is undone with the transaction
            if refused.note is not None:
                await self._note(failed, refused.note)
            return None
        rollback, superseded = recorded
        log.info(
            "auto-rollback", extra={"deployment_id": failed.id, "rollback_id": new.id, "target": target.id}
        )
        for changed in (claimed, *superseded, rollback):
            await self.gateways.deployment_changed(changed)
        await self.recorder.dispatcher.dispatch_soon(new.id)
        return rollback

    async def _auto_rollback(self, failed: Deployment) -> bool:
        """Whether the environment's current config asks for auto-rollback."""
        stored = await self.store.now.configs.get(failed.component_id, failed.environment)
        if stored is None:
            return False
        try:
            return WorkloadConfig.model_validate(stored.body).auto_rollback
        except ValidationError:
            log.warning("unreadable config", extra={"deployment_id": failed.id, "version": stored.version})
            return False

    async def _note(self, deployment: Deployment, note: str) -> None:
        noted = await self.store.now.deployments.add_note(deployment, note)
        if noted is not None:
            log.info("no auto-rollback", extra={"deployment_id": deployment.id, "note": note})
            await self.gateways.deployment_changed(noted)

    async def _apply_run(self, report: RolloutReport) -> None:
        if report.execution_id is None:
            log.warning("run report without execution id", extra={"deployment_id": report.deployment_id})
            return
        status, reason = execution_status_for(report.status)
        moved = await move_execution(
            self.store,
            report.execution_id,
            status=status,
            reason=report.reason or reason,
            message=report.message,
            dataplane_id=report.dataplane_id,
            deployment_id=report.deployment_id,
        )
        log.info(
            "run report",
            extra={"execution_id": report.execution_id, "status": status, "applied": moved is not None},
        )
