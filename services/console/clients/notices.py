"""Deployment notices from the bus: the orchestrator's `DeploymentChanged`, for live pages.

Core NATS, lossy by design (as for the gateway's long-poll): a notice only says "look again", and
the page then reads the API with the person's own key. So a lost notice delays an update until
the next one (or a reload), and a notice of another org is never shown: it is dropped before any
page hears of it, because only (org, project, component) of a subscriber's own session match.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from libs.contracts.messages import DeploymentChanged, DeploymentView
from libs.runtime.bus import Bus

log = logging.getLogger(__name__)

Sink = Callable[[DeploymentView], Awaitable[None]]


async def subscribe(bus: Bus, sink: Sink) -> Subscription:
    """Every deployment's changes, handed to `sink` (malformed notices are logged and dropped)."""

    async def on_message(msg: Msg) -> None:
        try:
            view = DeploymentChanged.model_validate_json(msg.data).deployment
        except ValidationError:
            log.warning("ignored a malformed DeploymentChanged", extra={"subject": msg.subject})
            return
        await sink(view)

    return await bus.nc.subscribe(bus.subjects.deployment_changed("*"), cb=on_message)


async def unsubscribe(sub: Subscription) -> None:
    try:
        await sub.unsubscribe()
    except nats.errors.Error:
        log.info("notices: the connection had closed already")
