"""The namespaces this agent made sure of, so that each costs one request per agent lifetime.

Deploys and removals both need the namespace first (a removal writes its
tombstone there). A namespace deleted behind the agent's back shows up as a
404 on the next write; the applier then `forget`s it and makes it again.
"""

from __future__ import annotations

from libs.contracts.messages import DeployCommand, RemoveCommand

from ..clients.kube import Kube
from ..domain import manifests


class Namespaces:
    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._known: set[str] = set()

    def __contains__(self, namespace: str) -> bool:
        return namespace in self._known

    async def ensure(self, cmd: DeployCommand | RemoveCommand) -> None:
        if cmd.namespace in self._known:
            return
        await self._kube.ensure_namespace(manifests.namespace(cmd))
        self._known.add(cmd.namespace)

    def forget(self, namespace: str) -> None:
        self._known.discard(namespace)
