"""Removing a deleted component from the cluster, in order with its deploys.

The steps: stop watching the component (nothing is reported: the orchestrator
forgot its deployments); leave a tombstone whose seq refuses a deploy
dispatched just before the deletion that arrives after it; then delete what
Landfall applied for it (`domain.ordering.removable`), unless one of them
carries a newer seq than the removal (`domain.ordering.applied_after`: a
component of the same name deployed since; a dependent keeps the seq of the
deploy that last changed it, so only all of them together tell). Primary objects go
first (`manifests.REMOVABLE`), so the workload stops before its Service and
Secret go. Kubernetes unreachable is waited out in place, like a deploy; a
removal the API server refuses (e.g. RBAC without delete) is logged for a
person and does not block later commands.

What is not the agent's stays: a removal naming another namespace than its
org, project and environment lead to, or another data plane, is refused
(`command_rejected`, logged: removals have no report) before anything is read;
only objects carrying both Landfall's and this data plane's labels are listed
and deleted; a tombstone name taken by an object Landfall did not write
refuses the removal, as it would have to be overwritten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from libs.contracts import reasons
from libs.contracts.messages import RemoveCommand

from ..clients.kube import Kube, KubeRejected
from ..domain import manifests, ordering, trust
from .namespaces import Namespaces
from .pacing import KeepAlive, while_kube_unavailable
from .watch import RolloutWatcher

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Remover:
    """Removes a deleted component: stops its watches, leaves a tombstone, deletes its objects."""

    kube: Kube
    namespaces: Namespaces
    watcher: RolloutWatcher
    dataplane_id: str

    async def remove(self, cmd: RemoveCommand, *, keep_alive: KeepAlive) -> list[str]:
        """What was deleted (`Kind/name`), once done; nothing if the removal was refused."""
        refused = trust.refusal(cmd, self.dataplane_id)
        if refused is not None:
            self._refused(cmd, reasons.COMMAND_REJECTED, refused)
            return []
        try:
            return await while_kube_unavailable(
                lambda: self._remove(cmd),
                keep_alive=keep_alive,
                waiting="kubernetes unavailable; the removal waits",
                ids={"teardown_id": cmd.teardown_id},
            )
        except trust.NotOwned as exc:
            self._refused(cmd, reasons.COMMAND_REJECTED, str(exc))
            return []
        except KubeRejected as exc:
            self._refused(cmd, reasons.APPLY_REJECTED, f"the API server refused it ({exc}); remove by hand")
            return []

    @staticmethod
    def _refused(cmd: RemoveCommand, reason: str, message: str) -> None:
        log.error(
            "refusing a removal" if reason == reasons.COMMAND_REJECTED else "a removal failed",
            extra={
                "teardown_id": cmd.teardown_id,
                "namespace": cmd.namespace,
                "component": cmd.component,
                "reason": reason,
                "error": message,
            },
        )

    async def _remove(self, cmd: RemoveCommand) -> list[str]:
        selector = manifests.labels(cmd, self.dataplane_id)  # both labels: nobody else's is listed
        listed = [(kind, await self.kube.list(kind, cmd.namespace, selector)) for kind in manifests.REMOVABLE]
        newer = ordering.applied_after(cmd, [obj for _, objs in listed for obj in objs], self.dataplane_id)
        if newer is not None:
            # A component of this name was deployed again after this removal was decided (a
            # removal redelivered late): its objects and its rollout watch are not this removal's.
            log.warning(
                "a removal older than what the cluster runs: nothing removed",
                extra={"teardown_id": cmd.teardown_id, "component": cmd.component, "newer": newer},
            )
            return []
        await self.watcher.forget_component(cmd.namespace, cmd.component)
        await self.namespaces.ensure(cmd)
        tomb = manifests.tombstone(cmd, self.dataplane_id)
        guard = trust.guard(tomb.kind, cmd.namespace, self.dataplane_id)
        await self.kube.apply(tomb.kind, cmd.namespace, tomb.body, guard=guard)
        removed: list[str] = []
        for kind, objs in listed:
            for obj in objs:
                if not ordering.removable(obj, cmd, self.dataplane_id):
                    continue
                name = str((obj.get("metadata") or {}).get("name", ""))
                if name and await self.kube.delete(kind, cmd.namespace, name):
                    removed.append(f"{kind}/{name}")
        return removed
