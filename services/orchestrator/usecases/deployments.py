"""Deployments people ask for: deploy an image (a rollback when it ran there before), promote, read.

What is subtle:

* "Newer" means accepted later: a manual deployment is accepted when it is asked
  for, so it supersedes whatever of the component is in flight in that environment.
* A rollback is a deployment of an image that succeeded in the environment
  before, and is not what runs there now; pinning it by digest redeploys exactly
  those bytes.
* A promotion takes the digest of what runs in one environment to the next one
  in pipeline order, never further.
* Releases: a deployment pins an image and a config version. Only a rollback (auto-rollback,
  `source: "rollback"` from the report handling) brings back an old config version; a redeploy of
  an earlier image asked for here, and a promotion, run with the target environment's *current*
  config (`config_version` left None: recording takes the current one under its lock), and the
  answer's notes say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.contracts.ids import looks_like
from libs.runtime.errors import Conflict, Invalid, NotFound
from services.orchestrator.domain.records import Component, Deployment
from services.orchestrator.domain.rules import manual_image, next_environment, same_image
from services.orchestrator.store import Store
from services.orchestrator.usecases.recording import Recorder, asked_now


@dataclass(kw_only=True, eq=False)
class Deployments:
    store: Store
    recorder: Recorder

    async def deploy(
        self, component: Component, *, environment: str | None, image: str | None, tag: str | None
    ) -> Deployment:
        """Deploy an image of the component (by default its configured one) to an environment.

        Redeploying an earlier image is the same call with that image (best pinned as
        `host/repository@digest`, from the deployment history); it is recorded as a rollback."""
        reference = manual_image(component, image=image, tag=tag)
        target, _ = await self.recorder.environment(component.org, environment, field="environment")
        image_text = str(reference)
        deployments = self.store.now.deployments
        running = await deployments.last_succeeded(component.id, target.name)
        source = "manual"
        if running is not None and not same_image(running, image_text, reference.digest):
            earlier = await deployments.succeeded_before(
                component.id, target.name, image=image_text, digest=reference.digest
            )
            source = "rollback" if earlier else "manual"
        notes = []
        if source == "rollback":
            notes.append(
                f"an earlier image, redeployed with the current config of {target.name}"
                f" ({await self._config_label(component, target.name)})"
            )
        new = asked_now(component, target, image_text, reference.digest, source=source, notes=notes)
        return await self.recorder.record_and_dispatch(new)

    async def promote(self, component: Component, *, from_env: str, to_env: str) -> Deployment:
        """Deploy what runs in `from_env` (same digest) to the next environment of the pipeline."""
        source, environments = await self.recorder.environment(component.org, from_env, field="from")
        target = next((e for e in environments if e.name == to_env), None)
        if target is None:
            raise Invalid("to", f"no environment named {to_env!r}")
        following = next_environment(environments, source.name)
        if following is None or following.name != target.name:
            hint = f"the next one is {following.name!r}" if following else f"{source.name!r} is the last one"
            raise Invalid("to", f"promotions go to the next environment in pipeline order; {hint}")
        running = await self.store.now.deployments.last_succeeded(component.id, source.name)
        if running is None:
            raise Conflict(f"nothing runs in {source.name!r} yet: no succeeded deployment to promote")
        notes = [
            f"promoted from {source.name} ({running.id})",
            f"with the config of {target.name} ({await self._config_label(component, target.name)}),"
            f" not the one of {source.name}",
        ]
        new = asked_now(component, target, running.image, running.digest, source="promotion", notes=notes)
        return await self.recorder.record_and_dispatch(new)

    async def _config_label(self, component: Component, environment: str) -> str:
        current = await self.store.now.configs.get(component.id, environment)
        return f"config version {current.version}" if current is not None else "no config set: the defaults"

    async def get(self, deployment_id: str, *, org: str | None = None) -> Deployment:
        """The deployment; with `org`, only if it is that org's (another org's is "not found" too)."""
        found = (
            await self.store.now.deployments.get(deployment_id) if looks_like("dep", deployment_id) else None
        )
        if found is None or (org is not None and found.org != org):
            raise NotFound(f"deployment {deployment_id[:40]!r}")
        return found

    async def history(self, component: Component, *, environment: str | None, limit: int) -> list[Deployment]:
        return await self.store.now.deployments.history(component.id, environment=environment, limit=limit)
