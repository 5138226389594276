"""What every way of asking for a deployment shares: choosing the environment, recording, announcing.

Recording supersedes the older in-flight deployments of the same component and
environment in the same round trip (see `store.deployments`); each of those is
announced too, so a gateway's long poll on one of them returns at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from libs.contracts.ids import new_id
from libs.contracts.messages import utcnow
from libs.runtime.errors import Conflict, Invalid, NotFound
from services.orchestrator.clients.gateways import Gateways
from services.orchestrator.domain.records import Component, Deployment, Environment, NewDeployment
from services.orchestrator.store import Store
from services.orchestrator.usecases.dispatch import Dispatcher

log = logging.getLogger(__name__)


def asked_now(
    component: Component,
    environment: Environment,
    image: str,
    digest: str | None,
    *,
    source: str,
    notes: list[str],
    config_version: int | None = None,
) -> NewDeployment:
    """A deployment asked for now by a person or by the orchestrator itself (promote, redeploy,
    config rollout, rollback): a fresh id; `config_version` None is the environment's current one."""
    return NewDeployment(
        id=new_id("dep"),
        component=component,
        environment=environment,
        image=image,
        digest=digest,
        source=source,
        notes=notes,
        accepted_at=utcnow(),
        config_version=config_version,
    )


@dataclass(kw_only=True, eq=False)
class Recorder:
    store: Store
    gateways: Gateways
    dispatcher: Dispatcher

    async def environment(
        self, org: str, name: str | None, *, field: str
    ) -> tuple[Environment, list[Environment]]:
        """The environment called `name` (default: the first in pipeline order), and all of them."""
        environments = await self.store.now.environments.of_org(org)
        if not environments:
            raise Conflict("the org has no environment yet; create one first")
        if name is None:
            return environments[0], environments
        for environment in environments:
            if environment.name == name:
                return environment, environments
        raise Invalid(field, f"no environment named {name!r}")

    async def record(self, new: NewDeployment) -> Deployment | None:
        """Record `new` (once: None when its id exists already or its component is gone)."""
        result = await self.store.now.deployments.record(new)
        if result is None:
            return None
        await self.announce(*result)
        return result[0]

    async def announce(self, deployment: Deployment, superseded: list[Deployment]) -> None:
        """Tell the gateways about a deployment just recorded and the ones it superseded."""
        for old in superseded:
            log.info("deployment superseded", extra={"deployment_id": old.id, "by": deployment.id})
            await self.gateways.deployment_changed(old)
        log.info(
            "deployment recorded",
            extra={"deployment_id": deployment.id, "source": deployment.source, "status": deployment.status},
        )
        await self.gateways.deployment_changed(deployment)

    async def record_and_dispatch(self, new: NewDeployment) -> Deployment:
        """Record `new`, dispatch it if it can be now, and return it as it then is."""
        await self.record(new)
        return await self.dispatch_now(new)

    async def dispatch_now(self, new: NewDeployment) -> Deployment:
        """Dispatch the recorded `new` if it can be now (else the sweeper will), and return it."""
        await self.dispatcher.dispatch_soon(new.id)
        deployment = await self.store.now.deployments.get(new.id)
        if deployment is None:  # the component was deleted meanwhile
            raise NotFound(f"component {new.component.project}/{new.component.name}")
        return deployment
