"""Heartbeats: core NATS (not JetStream), fire and forget, every `interval` less up to 20 %.

A heartbeat only says "this agent is up, at this version" to whoever listens
now; a lost one is replaced by the next, so nothing is retried or stored.
"""

from __future__ import annotations

import asyncio
import logging

from libs.contracts.messages import AgentHeartbeat, utcnow
from libs.runtime.bus import Bus

from .pacing import jittered

log = logging.getLogger(__name__)


async def beat_forever(bus: Bus, *, dataplane_id: str, version: str, interval_seconds: float) -> None:
    subject = bus.subjects.heartbeat(dataplane_id)
    while True:
        try:
            beat = AgentHeartbeat(dataplane_id=dataplane_id, version=version, sent_at=utcnow())
            await bus.publish(subject, beat)
        except Exception as exc:
            log.warning("heartbeat not sent", extra={"error": repr(exc)})
        await asyncio.sleep(jittered(interval_seconds))
