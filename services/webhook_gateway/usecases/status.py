"""Deployment status for CI, with a long-poll woken by the bus instead of polling.

Order matters: subscribe to `deployment_changed(id)` *before* asking the
orchestrator for the current view. A change that happens between the two is
then either in the view or in the subscription; the other order could miss the
final change and leave CI waiting until its deadline. (The SUB and the request
go over one NATS connection, which the server processes in order.)

A deployment the gateway accepted but the orchestrator has not recorded yet
(its consumer lags, or is down) is answered as `pending` from the gateway's own
record, so CI never sees a 404 for a request that got a 202.

Visibility: a CI token sees every deployment of its own component (also those
an admin started), and a 404 for any other, exactly as if it did not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from libs.contracts.messages import TERMINAL_STATUSES, DeploymentView
from libs.runtime.bus import BusUnavailable
from libs.runtime.errors import NotFound
from services.webhook_gateway.clients.orchestrator import Orchestrator
from services.webhook_gateway.domain.records import AcceptedRow, Binding
from services.webhook_gateway.store import StoreUnit


def _owned(view: DeploymentView, binding: Binding) -> bool:
    return (view.org, view.project, view.component) == binding.parts()


@dataclass(kw_only=True)
class DeploymentStatus:
    orchestrator: Orchestrator
    uow: StoreUnit

    async def _current(self, binding: Binding, deployment_id: str) -> DeploymentView | AcceptedRow:
        view = await self.orchestrator.deployment(deployment_id)
        if view is None:
            row = await self.uow.now.accepted.get(deployment_id)
            if row is None or row.binding != binding:
                raise NotFound("deployment")
            return row
        if not _owned(view, binding):
            raise NotFound("deployment")
        return view

    async def get(self, binding: Binding, deployment_id: str, *, wait: float) -> DeploymentView | AcceptedRow:
        """The deployment now, or, with `wait` > 0, as soon as it is final (at the latest after `wait` s).

        An `AcceptedRow` stands for a deployment still `pending` that the orchestrator does not know yet.
        """
        if wait <= 0:
            return await self._current(binding, deployment_id)
        async with self.orchestrator.changes(deployment_id) as changes:
            latest = await self._current(binding, deployment_id)
            if isinstance(latest, DeploymentView) and latest.status in TERMINAL_STATUSES:
                return latest
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while (remaining := deadline - loop.time()) > 0:
                try:
                    view = await changes.next(remaining)
                except TimeoutError:
                    break
                except BusUnavailable:  # connection closed: answer what we know
                    return latest
                if view is None or view.id != deployment_id or not _owned(view, binding):
                    continue
                latest = view
                if view.status in TERMINAL_STATUSES:
                    return view
            # Deadline: change messages are lossy by design, so ask once more for the truth.
            with contextlib.suppress(BusUnavailable):
                latest = await self._current(binding, deployment_id)
            return latest
