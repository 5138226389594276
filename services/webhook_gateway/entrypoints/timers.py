"""Work the gateway does on a clock: forgetting webhook ids older than the replay window."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from services.webhook_gateway.entrypoints.routes import GATEWAY

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 60


async def prune_webhook_ids(app: web.Application) -> None:
    gw = app[GATEWAY]
    while True:
        await asyncio.sleep(PRUNE_EVERY_SECONDS)
        try:
            await gw.intake.prune_webhook_ids()
        except Exception as exc:  # the next round tries again
            log.warning("pruning webhook ids failed", extra={"error": type(exc).__name__})
