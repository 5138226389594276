"""One data plane's agent: its parts wired together, started and stopped in the right order.

A deploy command flows consumer -> applier -> reporter -> (ack) -> watcher;
a removal consumer -> remover (which ends the component's watches). Heartbeats
and the in-cluster tag resolution (`entrypoints/resolver.py`) run beside them.
The rules each part keeps are in its module:
`entrypoints/consumer.py` (one command at a time, in stream order; a final
report stored before the ack), `usecases/apply.py` and `domain/ordering.py`
(which deployment wins), `usecases/watch.py` (superseding older watches,
resuming at start), `usecases/report.py` (durable, deduplicated reports).

`Agent` is the unit both composition roots build: `app.py` one per process,
`bench/fleet.py` many in one event loop. Stopping runs in reverse: no more
commands or heartbeats, then no more watches, then queued reports get
`grace_seconds` to be stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from libs.oci.registry.egress import EgressPolicy
from libs.runtime.bus import Bus

from .clients.kube import Kube
from .domain.identity import Identity
from .entrypoints.consumer import CommandConsumer, ConsumerMissing, ConsumerOptions
from .entrypoints.resolver import serve_resolution
from .settings import Settings
from .usecases.apply import Applier
from .usecases.heartbeat import beat_forever
from .usecases.metrics import AgentMetrics
from .usecases.namespaces import Namespaces
from .usecases.remove import Remover
from .usecases.report import Reporter
from .usecases.resolve import InClusterResolver
from .usecases.watch import RolloutWatcher

__all__ = ["Agent", "AgentMetrics", "AgentOptions", "ConsumerMissing"]


@dataclass(frozen=True)
class AgentOptions:
    version: str = "0.1.0"
    heartbeat_interval_seconds: float = 5.0
    rollout_poll_seconds: float = 2.0
    ack_wait_seconds: float = 60.0
    fetch_timeout_seconds: float = 5.0
    concurrency: int = 8  # components applied at once (`Settings.concurrency`)
    create_consumer: bool = True  # False: bind only (an agent with its own NATS user may not create it)
    service_account: str | None = None  # `namespace:name`: bound to read Secrets in each namespace made
    resolve_in_cluster: bool = False  # answer ResolveInCluster requests (`Settings.resolve_in_cluster`)
    resolve_timeout_seconds: float = 5.0
    insecure_registries: tuple[str, ...] = ()
    registry_policy: EgressPolicy = field(default_factory=EgressPolicy)

    @classmethod
    def from_settings(cls, settings: Settings, *, create_consumer: bool = True) -> AgentOptions:
        same: dict[str, Any] = {name: getattr(settings, name) for name in _SETTINGS_AS_THEY_ARE}
        return cls(
            **same,
            create_consumer=create_consumer,
            insecure_registries=tuple(settings.insecure_registries),
            registry_policy=EgressPolicy.parse(
                settings.registry_private_hosts, settings.registry_token_hosts
            ),
        )


# The options that are the setting of the same name, unchanged (a new one is one more name here).
_SETTINGS_AS_THEY_ARE = (
    "version",
    "heartbeat_interval_seconds",
    "rollout_poll_seconds",
    "ack_wait_seconds",
    "concurrency",
    "service_account",
    "resolve_in_cluster",
    "resolve_timeout_seconds",
)


class Agent:
    def __init__(
        self,
        *,
        identity: Identity,
        bus: Bus,
        kube: Kube,
        options: AgentOptions = AgentOptions(),
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.identity = identity
        self.dataplane_id = identity.dataplane_id
        self.bus = bus
        self.kube = kube
        self.options = options
        self.metrics = metrics
        dp = self.dataplane_id
        self.reporter = Reporter(bus=bus, dataplane_id=dp, metrics=metrics)
        self.watcher = RolloutWatcher(
            kube=kube,
            reporter=self.reporter,
            dataplane_id=dp,
            poll_seconds=options.rollout_poll_seconds,
            metrics=metrics,
        )
        namespaces = Namespaces(kube, dataplane_id=dp, service_account=options.service_account)
        self.consumer = CommandConsumer(
            bus=bus,
            dataplane_id=dp,
            options=ConsumerOptions(
                ack_wait_seconds=options.ack_wait_seconds,
                fetch_timeout_seconds=options.fetch_timeout_seconds,
                create_consumer=options.create_consumer,
                concurrency=options.concurrency,
            ),
            applier=Applier(kube=kube, identity=identity, namespaces=namespaces),
            remover=Remover(kube=kube, namespaces=namespaces, watcher=self.watcher, dataplane_id=dp),
            reporter=self.reporter,
            watcher=self.watcher,
            command_keys=identity.command_keys,
            metrics=metrics,
        )
        self.resolver = (
            InClusterResolver(
                identity=identity,
                insecure=list(options.insecure_registries),
                policy=options.registry_policy,
                timeout_seconds=options.resolve_timeout_seconds,
            )
            if options.resolve_in_cluster
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        dp, options = self.dataplane_id, self.options
        self.reporter.start()
        if self.resolver is not None:
            await self.resolver.start()
            await serve_resolution(self.bus, self.resolver)
        heartbeat = beat_forever(
            self.bus,
            dataplane_id=dp,
            version=options.version,
            interval_seconds=options.heartbeat_interval_seconds,
        )
        self._tasks = [
            asyncio.create_task(heartbeat, name=f"agent-heartbeat-{dp}"),
            asyncio.create_task(self.consumer.run(), name=f"agent-consumer-{dp}"),
        ]

    async def stop(self, *, grace_seconds: float = 5.0) -> None:
        """Stop taking commands, stop watching, then give queued reports `grace_seconds` to be stored."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.watcher.stop()
        await self.reporter.stop(grace_seconds=grace_seconds)
        if self.resolver is not None:
            await self.resolver.stop()

    @property
    def watching(self) -> int:
        return self.watcher.watching
