"""Applying one deploy command: read what is there, decide, write the objects in their order.

The steps, in order:
0. refuse a command that names another namespace than its org, project and
   environment lead to, or another data plane (`domain.trust.refusal`):
   `failed`/`command_rejected`, nothing read or written;
1. read the primary object (and, when there is none, the component's
   tombstone) and let `domain.ordering` decide: old, a redelivery, a Job name
   collision, or new; a primary object (or tombstone) this data plane did not
   write is refused (a tombstone: ignored, it proves nothing);
2. open the sealed pull secret and the sealed config secrets (only now: nothing
   is decrypted for a command that the cluster already answered) and plan the
   objects (`domain.manifests.plan`);
3. read the other objects of the plan, all at once; if any exists without this
   data plane's labels, refuse the whole command before writing anything; when
   the env Secret is among them, plan again with the keys it holds now (a
   removed secret needs a null to go; the same read, not a second one);
4. make sure of the namespace (refused too if it is not Landfall's); write the
   objects the primary one needs (pull Secret, Service, Ingress) concurrently,
   as none refers to another, skipping those step 3 found as this deploy
   would leave them (`manifests.unchanged`: a redeploy of a new image changes
   the Deployment alone); then the primary object LAST, because its seq
   marker says the whole set is applied;
5. drop what an earlier deploy left and this one no longer has (only ours): the
   pull Secret if it pulls anonymously, the env Secret if it has no config
   secrets, the HorizontalPodAutoscaler if its config no longer autoscales.

What the config asks for and this data plane cannot give (an Ingress host where
the data plane has no ingress class) is said in the `progressing` report.

Every write carries the ownership check (`trust.guard`) into `Kube.apply`, so an
object that appears between the read and the write is read and checked too. A
namespace deleted behind the agent's back (a 404 on a write in a namespace the
agent had made) is made again, once.

Errors: Kubernetes unreachable is waited out in place (`pacing`); a request the
API server refuses for good fails this deployment (`apply_rejected`); an object
that is not the agent's fails it with `command_rejected`, naming the object; an
unexpected exception fails it too (`agent_error`) rather than block every later
command of the data plane.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from libs.contracts import reasons
from libs.contracts.messages import DeployCommand, utcnow

from ..clients.kube import Conflict, Kube, KubeRejected
from ..domain import manifests, ordering, trust, workload
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
        refused = trust.refusal(cmd, self.identity.dataplane_id)
        if refused is not None:
            log.error(
                "refusing a deploy command",
                extra={"deployment_id": cmd.deployment_id, "namespace": cmd.namespace, "error": refused},
            )
            return Outcome("failed", reason=reasons.COMMAND_REJECTED, message=refused)
        try:
            return await while_kube_unavailable(
                lambda: self._apply(cmd),
                keep_alive=keep_alive,
                waiting="kubernetes unavailable; the command waits",
                ids={"deployment_id": cmd.deployment_id},
            )
        except trust.NotOwned as exc:
            log.error("refusing to change an object Landfall did not write", extra={"error": str(exc)})
            return Outcome("failed", reason=reasons.COMMAND_REJECTED, message=str(exc))
        except KubeRejected as exc:
            return Outcome("failed", reason=reasons.APPLY_REJECTED, message=str(exc))
        except SealedSecretError as exc:
            return Outcome("failed", reason=exc.reason, message=exc.message)
        except Exception as exc:  # a bug must not block every later command
            log.exception("applying a deploy command failed", extra={"deployment_id": cmd.deployment_id})
            return Outcome("failed", reason=reasons.AGENT_ERROR, message=type(exc).__name__)

    async def _apply(self, cmd: DeployCommand) -> Outcome:
        dp = self.identity.dataplane_id
        kind, name = manifests.primary(cmd)
        current = await self.kube.get(kind, cmd.namespace, name)
        if current is None:
            # Nothing applied yet, or the component was deleted: then a tombstone says since when.
            tomb = await self.kube.get("ConfigMap", cmd.namespace, manifests.tombstone_name(cmd.component))
            decided = ordering.against_tombstone(cmd, tomb if tomb and trust.owned(tomb, dp) else None)
        elif not trust.owned(current, dp):
            raise trust.NotOwned(kind, cmd.namespace, name)
        else:
            decided = ordering.against_primary(cmd, current)
        if decided is not None:
            return decided
        dockerconfig = self.identity.open(cmd.pull_secret) if cmd.pull_secret is not None else None
        secrets = self._open_secrets(cmd)
        objects = manifests.plan(cmd, dp, dockerconfigjson=dockerconfig, secrets=secrets)
        found = await self._check(cmd, objects[:-1])
        env_secret = found.get(("Secret", workload.env_secret_name(cmd.component)))
        if secrets is not None and env_secret is not None:
            # The keys the env Secret holds now: those this config no longer has are removed.
            keys_now = sorted((env_secret.get("data") or {}).keys())
            objects = manifests.plan(
                cmd, dp, dockerconfigjson=dockerconfig, secrets=secrets, secret_keys_now=keys_now
            )
        del dockerconfig, secrets
        exists = {key: obj is not None for key, obj in found.items()}
        exists[(kind, name)] = current is not None
        # A dependent that this deploy would not change is not written again (the primary always is).
        same: set[tuple[str, str]] = {
            (o.kind, o.name)
            for o in objects[:-1]
            if (now := found.get((o.kind, o.name))) is not None and manifests.unchanged(now, o.body)
        }
        # What an earlier deploy left is only worth looking for if there was an earlier deploy using it.
        leftovers = _Leftovers(
            pull_secret=current is None or manifests.refers_to_pull_secret(current, cmd.component),
            env_secret=current is not None and workload.refers_to_env_secret(current, cmd.component),
            hpa=current is not None and workload.was_autoscaled(current),
        )
        try:
            return await self._write(cmd, objects, exists=exists, leftovers=leftovers, unchanged=same)
        except KubeRejected as exc:
            if exc.status != 404 or cmd.namespace not in self.namespaces:
                raise
            self.namespaces.forget(cmd.namespace)  # someone deleted the namespace: make it again
            return await self._write(cmd, objects, exists={}, leftovers=leftovers, unchanged=set())

    def _open_secrets(self, cmd: DeployCommand) -> dict[str, str] | None:
        if cmd.secrets is not None:
            return self.identity.open_values(cmd.secrets)
        if cmd.secret_names:
            raise SealedSecretError(
                reasons.CONFIG_SECRETS_UNREADABLE,
                "the command names config secrets but carries none sealed to this data plane",
            )
        return None

    async def _check(
        self, cmd: DeployCommand, objects: list[manifests.Obj]
    ) -> dict[tuple[str, str], manifests.Body | None]:
        """What of `objects` exists, by kind and name (one GET each, at once); raises `NotOwned` for
        the first one that is not this data plane's."""
        found = await asyncio.gather(*(self.kube.get(o.kind, cmd.namespace, o.name) for o in objects))
        for obj, current in zip(objects, found, strict=True):
            if current is not None:
                trust.guard(obj.kind, cmd.namespace, self.identity.dataplane_id)(current)
        return {(o.kind, o.name): current for o, current in zip(objects, found, strict=True)}

    async def _write(
        self,
        cmd: DeployCommand,
        objects: list[manifests.Obj],
        *,
        exists: dict[tuple[str, str], bool],
        leftovers: _Leftovers,
        unchanged: set[tuple[str, str]],
    ) -> Outcome:
        """Write `objects` (primary last); `exists`: what was just read and checked, by kind and name
        (none known: each write reads and checks for itself); `unchanged`: dependents read just now
        that this deploy would not change, left as they are."""
        await self.namespaces.ensure(cmd)
        *before, primary = objects
        dp = self.identity.dataplane_id

        def write(obj: manifests.Obj) -> Awaitable[manifests.Body]:
            guard = trust.guard(obj.kind, cmd.namespace, dp)
            return self.kube.apply(
                obj.kind, cmd.namespace, obj.body, exists=exists.get((obj.kind, obj.name)), guard=guard
            )

        changed = [obj for obj in before if (obj.kind, obj.name) not in unchanged]
        written = await asyncio.gather(*(write(obj) for obj in changed), return_exceptions=True)
        for result in written:
            if isinstance(result, BaseException):
                raise result
        if primary.kind == "Job":
            try:
                await self.kube.create("Job", cmd.namespace, primary.body)
            except Conflict:
                return Outcome("redelivered")
        else:
            await write(primary)
        if cmd.kind == "deploy":
            await self._drop_leftovers(cmd, leftovers)
        return Outcome("applied", applied_at=utcnow(), message=workload.unapplied(cmd))

    async def _drop_leftovers(self, cmd: DeployCommand, leftovers: _Leftovers) -> None:
        """Remove what an earlier deploy wrote and this one does not need (module docstring, step 5):
        a registry that became anonymous (or vendor), the last config secret deleted, autoscaling
        turned off (the Deployment has just been given its replicas again)."""
        drops: list[tuple[manifests.Kind, str]] = []
        if cmd.pull_secret is None and leftovers.pull_secret:
            drops.append(("Secret", manifests.pull_secret_name(cmd.component)))
        if cmd.secrets is None and leftovers.env_secret:
            drops.append(("Secret", workload.env_secret_name(cmd.component)))
        if cmd.config is not None and not workload.autoscaled(cmd) and leftovers.hpa:
            drops.append(("HorizontalPodAutoscaler", cmd.component))
        for kind, name in drops:
            found = await self.kube.get(kind, cmd.namespace, name)
            if found is not None and trust.owned(found, self.identity.dataplane_id):
                await self.kube.delete(kind, cmd.namespace, name)


@dataclass(frozen=True)
class _Leftovers:
    """Which objects an earlier deploy may have left that this one might not need."""

    pull_secret: bool = True
    env_secret: bool = False
    hpa: bool = False
