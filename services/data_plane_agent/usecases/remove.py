"""Removing a deleted component from the cluster, in order with its deploys.

The steps: stop watching the component (nothing is reported: the orchestrator
forgot its deployments); leave a tombstone whose seq refuses a deploy
dispatched just before the deletion that arrives after it; then delete what
Landfall applied for it (`domain.ordering.removable`). Primary objects go
first (`manifests.REMOVABLE`), so the workload stops before its Service and
Secret go. Kubernetes unreachable is waited out in place, like a deploy; a
removal the API server refuses (e.g. RBAC without delete) is logged for a
person and does not block later commands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from libs.contracts.messages import RemoveCommand

from ..clients.kube import Kube, KubeRejected
from ..domain import manifests, ordering
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
        """What was deleted (`Kind/name`), once done; nothing if the API server refused."""
        try:
            return await while_kube_unavailable(
                lambda: self._remove(cmd),
                keep_alive=keep_alive,
                waiting="kubernetes unavailable; the removal waits",
                ids={"teardown_id": cmd.teardown_id},
            )
        except KubeRejected as exc:
            log.error(
                "the API server refused a removal; remove the objects by hand",
                extra={
                    "teardown_id": cmd.teardown_id,
                    "namespace": cmd.namespace,
                    "component": cmd.component,
                    "error": str(exc),
                },
            )
            return []

    async def _remove(self, cmd: RemoveCommand) -> list[str]:
        await self.watcher.forget_component(cmd.namespace, cmd.component)
        await self.namespaces.ensure(cmd)
        tomb = manifests.tombstone(cmd, self.dataplane_id)
        await self.kube.apply(tomb.kind, cmd.namespace, tomb.body)
        removed: list[str] = []
        selector = manifests.labels(cmd)
        for kind in manifests.REMOVABLE:
            for obj in await self.kube.list(kind, cmd.namespace, selector):
                if not ordering.removable(obj, cmd, self.dataplane_id):
                    continue
                name = str((obj.get("metadata") or {}).get("name", ""))
                if name and await self.kube.delete(kind, cmd.namespace, name):
                    removed.append(f"{kind}/{name}")
        return removed
