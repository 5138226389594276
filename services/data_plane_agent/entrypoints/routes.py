"""The agent's HTTP surface: nothing of its own beyond `create_base_app`'s health, readiness,
metrics and OpenAPI document; this module adds the one readiness check only the agent has.

The agent is ready when NATS (checked by the base app) and the Kubernetes API
server answer: an agent that cannot reach its cluster takes no commands
anyway, and Kubernetes restarts or keeps traffic from what is not ready.
"""

from __future__ import annotations

from aiohttp import web

from libs.runtime.http import READY_CHECKS

from ..clients.kube import Kube


def add_readiness(app: web.Application, kube: Kube) -> None:
    async def kubernetes() -> None:
        await kube.version()

    app[READY_CHECKS]["kubernetes"] = kubernetes
