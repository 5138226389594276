"""The live feed: which open component pages a deployment notice concerns.

Each open event stream (one per browser tab on a component page) registers its session's org and
the component it shows; a notice wakes only the streams of that very component of that very org.
A wake-up is a flag, not a copy of the notice: the stream then reads the API with its own key, so
what a page shows is always what that person may see, and ten notices in a burst cost one read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from libs.contracts.messages import DeploymentView

Topic = tuple[str, str, str]  # org, project, component


@dataclass
class Feed:
    _listeners: dict[Topic, set[asyncio.Event]] = field(default_factory=dict)
    closed: bool = False

    def close(self) -> None:
        """At shutdown: wake every stream so that it ends now, not after the server's grace period."""
        self.closed = True
        for listeners in self._listeners.values():
            for wake in listeners:
                wake.set()

    async def notice(self, view: DeploymentView) -> None:
        for wake in self._listeners.get((view.org, view.project, view.component), ()):
            wake.set()

    @contextlib.contextmanager
    def listen(self, topic: Topic) -> Iterator[asyncio.Event]:
        wake = asyncio.Event()
        self._listeners.setdefault(topic, set()).add(wake)
        try:
            yield wake
        finally:
            listeners = self._listeners.get(topic, set())
            listeners.discard(wake)
            if not listeners:
                self._listeners.pop(topic, None)

    def listening(self) -> int:
        return sum(len(v) for v in self._listeners.values())
