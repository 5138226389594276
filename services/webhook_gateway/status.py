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
import logging

import nats.errors
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from libs.contracts.messages import TERMINAL_STATUSES, DeploymentChanged, DeploymentGet, DeploymentView
from libs.runtime.bus import Bus, BusUnavailable, RpcFailed
from libs.runtime.errors import not_found
from services.webhook_gateway.model import AcceptedRow, Binding
from services.webhook_gateway.models import DeploymentOut
from services.webhook_gateway.repository import Repository

log = logging.getLogger(__name__)


def _owned(view: DeploymentView, binding: Binding) -> bool:
    return (view.org, view.project, view.component) == (binding.org, binding.project, binding.component)


def _pending(row: AcceptedRow) -> DeploymentOut:
    return DeploymentOut(
        id=row.deployment_id,
        org=row.binding.org,
        project=row.binding.project,
        component=row.binding.component,
        environment=None,
        image=row.image,
        status="pending",
        source="webhook",
        created_at=row.created_at,
        updated_at=row.created_at,
        timings={"accepted": row.created_at},
    )


def _out(view: DeploymentView) -> DeploymentOut:
    return DeploymentOut.model_validate(view.model_dump())


async def _current(bus: Bus, repo: Repository, binding: Binding, deployment_id: str) -> DeploymentOut:
    try:
        view = await bus.request(
            bus.subjects.rpc_deployment_get, DeploymentGet(deployment_id=deployment_id), DeploymentView
        )
    except RpcFailed as exc:
        if exc.error.code != "not_found":
            raise BusUnavailable(f"the orchestrator could not answer: {exc.error.code}") from None
        row = await repo.accepted(deployment_id)
        if row is None or row.binding != binding:
            raise not_found("deployment") from None
        return _pending(row)
    if not _owned(view, binding):
        raise not_found("deployment")
    return _out(view)


async def deployment_status(
    *, bus: Bus, repo: Repository, binding: Binding, deployment_id: str, wait: float
) -> DeploymentOut:
    """The deployment now, or, with `wait` > 0, as soon as it is final (at the latest after `wait` s)."""
    if wait <= 0:
        return await _current(bus, repo, binding, deployment_id)
    try:
        sub: Subscription = await bus.nc.subscribe(bus.subjects.deployment_changed(deployment_id))
    except nats.errors.Error as exc:
        raise BusUnavailable(f"cannot subscribe: {type(exc).__name__}") from None
    try:
        latest = await _current(bus, repo, binding, deployment_id)
        if latest.status in TERMINAL_STATUSES:
            return latest
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (remaining := deadline - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=remaining)
            except nats.errors.TimeoutError:
                break
            except nats.errors.Error:  # connection closed: answer what we know
                return latest
            try:
                view = DeploymentChanged.model_validate_json(msg.data).deployment
            except ValidationError:
                log.warning("ignored a malformed DeploymentChanged", extra={"deployment_id": deployment_id})
                continue
            if view.id != deployment_id or not _owned(view, binding):
                continue
            latest = _out(view)
            if latest.status in TERMINAL_STATUSES:
                return latest
        # Deadline: change messages are lossy by design, so ask once more for the truth.
        with contextlib.suppress(BusUnavailable):
            latest = await _current(bus, repo, binding, deployment_id)
        return latest
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
