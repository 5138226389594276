"""Notices to the webhook gateways over core NATS: a deployment or a component changed.

Lossy by design: a deployment change only wakes long polls early (the database
is the truth and `rpc_deployment_get` reads it), a component change makes the
gateways drop their cached copy (their cache is trusted only while connected).
Each deployment notice is also counted by its new status (Prometheus).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from libs.contracts.messages import ComponentChanged, DeploymentChanged
from libs.runtime.bus import Bus
from services.orchestrator.domain.records import Component, Deployment


class Gateways:
    def __init__(self, bus: Bus, *, metrics: CollectorRegistry | None = None) -> None:
        self.bus = bus
        self._changes = Counter(
            "landfall_orchestrator_deployment_status_total",
            "deployment status changes, by new status",
            ["status"],
            registry=metrics if metrics is not None else CollectorRegistry(),
        )

    async def deployment_changed(self, deployment: Deployment) -> None:
        self._changes.labels(deployment.status).inc()
        await self.bus.publish(
            self.bus.subjects.deployment_changed(deployment.id),
            DeploymentChanged(deployment=deployment.view()),
        )

    async def component_changed(self, component: Component) -> None:
        await self.bus.publish(
            self.bus.subjects.components_changed,
            ComponentChanged(org=component.org, project=component.project, component=component.name),
        )
