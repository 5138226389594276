"""The namespaces this agent made sure of, so that each costs one request per agent lifetime.

Deploys and removals both need the namespace first (a removal writes its
tombstone there). A namespace deleted behind the agent's back shows up as a
404 on the next write; the applier then `forget`s it and makes it again.

Making sure of a namespace means: it exists and is Landfall's (one made by
hand under a Landfall name is refused, nothing goes into it); one this data
plane made gets the labels it lacks (Pod Security ones on a namespace made
before them), one another data plane made (its environment moved to this data
plane, in the same cluster) is written into but not changed (`domain.trust`);
and, when the agent knows its own service account (in a pod), the RoleBinding
through which it reads Secrets there: its ClusterRole reads none, so that the
agent sees the Secrets of the namespaces it made and of no other.
"""

from __future__ import annotations

import asyncio

from libs.contracts.messages import DeployCommand, RemoveCommand

from ..clients.kube import Kube
from ..domain import manifests, trust


class Namespaces:
    def __init__(self, kube: Kube, *, dataplane_id: str, service_account: str | None = None) -> None:
        self._kube = kube
        self._dataplane_id = dataplane_id
        self._service_account = service_account  # `namespace:name`; None: no binding (not in a pod)
        self._known: set[str] = set()
        # Components are applied concurrently: the first command in a namespace makes it, the others wait.
        self._making: dict[str, asyncio.Lock] = {}

    def __contains__(self, namespace: str) -> bool:
        return namespace in self._known

    async def ensure(self, cmd: DeployCommand | RemoveCommand) -> None:
        if cmd.namespace in self._known:
            return
        async with self._making.setdefault(cmd.namespace, asyncio.Lock()):
            if cmd.namespace not in self._known:
                await self._make(cmd)

    async def _make(self, cmd: DeployCommand | RemoveCommand) -> None:
        dp = self._dataplane_id
        wanted = manifests.namespace(cmd, dp)
        found = await self._kube.ensure_namespace(wanted)
        if found is not None:
            if not trust.landfall(found):
                raise trust.NotOwned("Namespace", cmd.namespace, cmd.namespace)
            have = (found.get("metadata") or {}).get("labels") or {}
            labels: dict[str, str] = wanted["metadata"]["labels"]
            if trust.owned(found, dp) and any(have.get(k) != v for k, v in labels.items()):
                await self._kube.merge_patch(
                    "Namespace", None, cmd.namespace, {"metadata": {"labels": labels}}
                )
        if self._service_account is not None:
            binding = manifests.secrets_binding(cmd, dp, self._service_account)
            await self._kube.apply(
                "RoleBinding", cmd.namespace, binding, guard=trust.guard("RoleBinding", cmd.namespace, dp)
            )
        self._known.add(cmd.namespace)

    def forget(self, namespace: str) -> None:
        self._known.discard(namespace)
