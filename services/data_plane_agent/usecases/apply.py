"""Applying one deploy command: read what is there, decide, write the objects in their order.

The steps, in order:
1. read the primary object (and, when there is none, the component's
   tombstone) and let `domain.ordering` decide: old, a redelivery, a Job name
   collision, or new;
2. open the sealed pull secret (only now: nothing is decrypted for a command
   that writes nothing) and plan the objects (`domain.manifests.plan`);
3. make sure of the namespace; write the objects the primary one needs (pull
   Secret, Service, Ingress) concurrently, as none refers to another; then the
   primary object LAST, because its seq marker says the whole set is applied;
4. drop a pull Secret an earlier deploy left if this one pulls anonymously.

Whether the primary object exists (just read) stands for the whole set: an
earlier deploy wrote them together. A wrong guess costs a 404 or 409 and a
retry, no more. A namespace deleted behind the agent's back (a 404 on a write
in a namespace the agent had made) is made again, once.

Errors: Kubernetes unreachable is waited out in place (`pacing`); a request the
API server refuses for good fails this deployment (`apply_rejected`); an
unexpected exception fails it too (`agent_error`) rather than block every later
command of the data plane.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from libs.contracts import naming, reasons
from libs.contracts.messages import DeployCommand, utcnow

from ..clients.kube import Conflict, Kube, KubeRejected
from ..domain import manifests, ordering
from ..domain.identity import Identity, SealedSecretError
from ..domain.ordering import Outcome
from .namespaces import Namespaces
from .pacing import KeepAlive, while_kube_unavailable

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Applier:
    """Applies deploy commands: the objects, in order, unless the cluster holds a newer deployment."""

    kube: Kube
    identity: Identity
    namespaces: Namespaces

    async def apply(self, cmd: DeployCommand, *, keep_alive: KeepAlive) -> Outcome:
        """Apply `cmd` until it is done one way or another (see the module docstring for errors)."""
        try:
            return await while_kube_unavailable(
                lambda: self._apply(cmd),
                keep_alive=keep_alive,
                waiting="kubernetes unavailable; the command waits",
                ids={"deployment_id": cmd.deployment_id},
            )
        except KubeRejected as exc:
            return Outcome("failed", reason=reasons.APPLY_REJECTED, message=str(exc))
        except SealedSecretError as exc:
            return Outcome("failed", reason=exc.reason, message=exc.message)
        except Exception as exc:  # a bug must not block every later command
            log.exception("applying a deploy command failed", extra={"deployment_id": cmd.deployment_id})
            return Outcome("failed", reason=reasons.AGENT_ERROR, message=type(exc).__name__)

    async def _apply(self, cmd: DeployCommand) -> Outcome:
        kind, name = manifests.primary(cmd)
        current = await self.kube.get(kind, cmd.namespace, name)
        if current is None:
            # Nothing applied yet, or the component was deleted: then a tombstone says since when.
            tomb = await self.kube.get("ConfigMap", cmd.namespace, manifests.tombstone_name(cmd.component))
            decided = ordering.against_tombstone(cmd, tomb)
        else:
            decided = ordering.against_primary(cmd, current)
        if decided is not None:
            return decided
        dockerconfig = self.identity.open(cmd.pull_secret) if cmd.pull_secret is not None else None
        objects = manifests.plan(cmd, self.identity.dataplane_id, dockerconfigjson=dockerconfig)
        del dockerconfig
        try:
            # An earlier deploy's pull Secret is only worth looking for if that deploy used one.
            used_secret = current is None or manifests.refers_to_pull_secret(current, cmd.component)
            return await self._write(
                cmd, objects, primary_exists=current is not None, may_have_pull_secret=used_secret
            )
        except KubeRejected as exc:
            if exc.status != 404 or cmd.namespace not in self.namespaces:
                raise
            self.namespaces.forget(cmd.namespace)  # someone deleted the namespace: make it again
            return await self._write(cmd, objects, primary_exists=None)

    async def _write(
        self,
        cmd: DeployCommand,
        objects: list[manifests.Obj],
        *,
        primary_exists: bool | None,
        may_have_pull_secret: bool = True,
    ) -> Outcome:
        await self.namespaces.ensure(cmd)
        *before, primary = objects
        written = await asyncio.gather(
            *(self.kube.apply(obj.kind, cmd.namespace, obj.body, exists=primary_exists) for obj in before),
            return_exceptions=True,
        )
        for result in written:
            if isinstance(result, BaseException):
                raise result
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

    async def _drop_pull_secret(self, cmd: DeployCommand) -> None:
        """The registry became anonymous (or vendor): remove the credential an earlier deploy left."""
        name = manifests.pull_secret_name(cmd.component)
        secret = await self.kube.get("Secret", cmd.namespace, name)
        labels = ((secret or {}).get("metadata") or {}).get("labels") or {}
        if secret is not None and labels.get(naming.MANAGED_BY) == "landfall":
            await self.kube.delete("Secret", cmd.namespace, name)
