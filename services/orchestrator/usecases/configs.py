"""Per-environment config: read it, change it (a new version), and roll the change out.

An environment owns its configuration of a component (replicas, resources, probes, env, secrets,
ingress): every change is a new immutable version (`store.configs`), and a deployment pins the
version it runs with, so a rollback or a redeploy knows exactly what it brings back.

What is subtle:

* A `PUT` replaces every field but `secrets`; in `secrets` a string sets, `None` deletes and an
  absent name keeps. Values go to Vault (`store.secrets`, write-only) *before* the version row that
  names the KV version they landed in, under a per-environment lock (`store.configs.lock`) so
  Vault and the rows see changes in one order; a row never points at a version that does not
  exist. A Vault write whose row then failed leaves a version no row names; the names a row
  records are the only ones ever sealed (`ConfigSecretsSeal.names`), so a secret that such a
  failed request added never reaches a data plane.
* A change that changes nothing (same fields, no secret set, only absent names deleted) answers the
  current version and stores none. A secret that is set counts as a change even with its old value:
  the orchestrator cannot read the old one to compare, by design.
* When something runs (or is on its way) in the environment, the change is rolled out at once: a
  deployment of that image (by digest when known) with `source: "config"`, pinned to the new
  version. Recording it supersedes whatever is still in flight there, as any deployment does.
* The version row and its rollout are recorded in one transaction: a crash between them cannot
  leave a version that nothing rolls out (the client's retry would compare equal and answer
  "unchanged"). Dispatching comes after the commit; a crash there leaves the rollout `pending`,
  which the sweeper dispatches.
* What runs is read under the lock every deployment of the environment is recorded under
  (`store.deployments.lock`), in that same transaction: a webhook recorded meanwhile is either
  seen (and its image rolled out) or waits, then supersedes the rollout with the new version. The
  locks are always taken config first, then deployments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from libs.contracts.config import WorkloadConfig
from libs.runtime.errors import Conflict, Invalid, NotFound
from libs.runtime.store import Duplicate
from services.orchestrator.domain.records import (
    Component,
    Deployment,
    Environment,
    EnvironmentConfig,
    NewDeployment,
)
from services.orchestrator.store import Repos, Store
from services.orchestrator.store.secrets import ConfigSecrets
from services.orchestrator.usecases.recording import Recorder, asked_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigState:
    """One environment's config as the API shows it (version 0: never configured)."""

    config: WorkloadConfig
    version: int
    secret_names: list[str]


@dataclass(frozen=True, slots=True)
class ConfigChange:
    state: ConfigState
    changed: bool
    secrets_set: list[str] = field(default_factory=list)
    secrets_deleted: list[str] = field(default_factory=list)
    deployment: Deployment | None = None

    def summary(self) -> str:
        """What the audit item says: the version and the secret names touched, never a value."""
        if not self.changed:
            return f"unchanged (version {self.state.version})"
        parts = [f"version {self.state.version}"]
        if self.secrets_set:
            parts.append("secrets set: " + ", ".join(self.secrets_set))
        if self.secrets_deleted:
            parts.append("secrets deleted: " + ", ".join(self.secrets_deleted))
        if self.deployment is not None:
            parts.append(f"rolled out by {self.deployment.id}")
        return "; ".join(parts)


def state_of(stored: EnvironmentConfig | None) -> ConfigState:
    if stored is None:
        return ConfigState(config=WorkloadConfig(), version=0, secret_names=[])
    return ConfigState(
        config=WorkloadConfig.model_validate(stored.body),
        version=stored.version,
        secret_names=list(stored.secret_names),
    )


@dataclass(kw_only=True, eq=False)
class Configs:
    store: Store
    secrets: ConfigSecrets
    recorder: Recorder

    async def _environment(self, component: Component, name: str) -> Environment:
        for environment in await self.store.now.environments.of_org(component.org):
            if environment.name == name:
                return environment
        raise NotFound(f"environment {name!r}")

    async def get(self, component: Component, environment: str) -> ConfigState:
        await self._environment(component, environment)
        return state_of(await self.store.now.configs.get(component.id, environment))

    async def put(
        self,
        component: Component,
        environment: str,
        *,
        config: WorkloadConfig,
        secrets: dict[str, str | None],
        actor: str | None,
    ) -> ConfigChange:
        """Store `config` (and the secret changes) as the environment's next version, and roll it
        out where something runs."""
        target = await self._environment(component, environment)
        refused = config.unsupported_for(component.type)
        if refused:
            where = "web-application" if refused[0] == "ingress" else "service and web-application"
            raise Invalid(refused[0], f"only for {where} components, not for a {component.type}")
        async with self.store.transaction() as tx:
            await tx.configs.lock(component.id, environment)  # Vault write and row in one order
            current = await tx.configs.get(component.id, environment)
            before = state_of(current)
            names = set(before.secret_names)
            to_set = sorted(name for name, value in secrets.items() if value is not None)
            to_delete = sorted(name for name, value in secrets.items() if value is None and name in names)
            body = config.model_dump(mode="json")
            if body == before.config.model_dump(mode="json") and not to_set and not to_delete:
                return ConfigChange(state=before, changed=False)
            secrets_version = current.secrets_version if current is not None else None
            if to_set or to_delete:
                changes = {name: secrets[name] for name in (*to_set, *to_delete)}
                secrets_version = await self.secrets.change(
                    component.org, component.project, component.name, environment, changes
                )
            names = (names | set(to_set)) - set(to_delete)
            try:
                stored = await tx.configs.add(
                    component.id,
                    environment,
                    body=body,
                    secret_names=sorted(names),
                    secrets_version=secrets_version if names else None,
                    created_by=actor,
                )
            except Duplicate:  # cannot happen under the lock; a conflict, never an overwrite
                raise Conflict(
                    "the config of this environment changed meanwhile; read it and try again"
                ) from None
            rollout = await self._roll_out(tx, component, target, stored.version)
        log.info(
            "config changed",
            extra={
                "component_id": component.id,
                "environment": environment,
                "version": stored.version,
                "secret_names": sorted(names),
            },
        )
        deployment = None
        if rollout is not None:
            new, recorded, superseded = rollout
            await self.recorder.announce(recorded, superseded)
            deployment = await self.recorder.dispatch_now(new)
        return ConfigChange(
            state=state_of(stored),
            changed=True,
            secrets_set=to_set,
            secrets_deleted=to_delete,
            deployment=deployment,
        )

    async def _roll_out(
        self, tx: Repos, component: Component, target: Environment, version: int
    ) -> tuple[NewDeployment, Deployment, list[Deployment]] | None:
        """Record, in `tx`, a deployment of what runs (or is on its way) in `target` with config
        `version`: the new one, as recorded, and the ones it superseded (None: nothing runs)."""
        await tx.deployments.lock(component.id, target.name)
        live = await tx.deployments.live(component.id, target.name)
        if live is None:
            return None
        notes = [f"config version {version} rolled out with the image of {live.id}"]
        new = asked_now(
            component, target, live.image, live.digest, source="config", notes=notes, config_version=version
        )
        result = await tx.deployments.record(new)
        if result is None:  # a fresh id: only when the component is gone
            raise NotFound(f"component {component.project}/{component.name}")
        return new, *result

    async def forget(self, component: Component) -> None:
        """Destroy the component's config secrets in every environment of its org (after it is
        deleted: its config rows went with it)."""
        for environment in await self.store.now.environments.of_org(component.org):
            await self.secrets.destroy(component.org, component.project, component.name, environment.name)
