"""Composition root: identity, NATS, Kubernetes, the agent; HTTP serves only health and metrics.

NATS: with its own NATS user (minted at enrollment) the agent connects as that
user, creates no streams and only binds to its consumer, which the orchestrator
created: its permissions allow nothing else. Its JWT expires; `usecases/renewal.py`
renews it before then and reconnects with the new one.

Shutdown runs in reverse: the agent stops consuming and watching (queued reports
get a few seconds to be stored), then the Kubernetes client closes, then NATS
drains.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from libs.runtime.http import METRICS, create_base_app
from libs.runtime.natsauth import RenewableUser
from libs.runtime.service import BUS, nats_ctx

from .agent import Agent, AgentMetrics, AgentOptions
from .clients.kube import Kube
from .domain.identity import Identity
from .entrypoints.routes import add_readiness
from .settings import Settings
from .usecases.enrollment import load_identity
from .usecases.renewal import JwtRenewer

IDENTITY = web.AppKey("identity", Identity)
KUBE = web.AppKey("kube", Kube)
AGENT = web.AppKey("agent", Agent)


def identity_ctx(settings: Settings) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[IDENTITY] = await load_identity(settings)
        yield

    return ctx


def agent_nats_ctx(settings: Settings) -> Callable[[web.Application], Any]:
    """Connect as the agent's own NATS user (renewed before its JWT expires), else as settings say."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        identity = app[IDENTITY]
        own = RenewableUser(identity.nats) if identity.nats is not None else None
        inner = nats_ctx(settings, ensure_streams=settings.ensure_streams and own is None, user=own)
        async for _ in inner(app):
            task = None
            if own is not None:
                renewer = JwtRenewer(bus=app[BUS], user=own, identity=identity, state_dir=settings.state_dir)
                task = asyncio.create_task(renewer.run(), name="agent-jwt-renewal")
            yield
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return ctx


def kube_ctx(settings: Settings) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        kube = await Kube.from_settings(settings)
        app[KUBE] = kube
        add_readiness(app, kube)
        yield
        await kube.close()

    return ctx


def agent_ctx(settings: Settings) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        identity = app[IDENTITY]
        agent = Agent(
            identity=identity,
            bus=app[BUS],
            kube=app[KUBE],
            options=AgentOptions.from_settings(settings, create_consumer=identity.nats is None),
            metrics=AgentMetrics(app[METRICS]),
        )
        app[AGENT] = agent
        await agent.start()
        yield
        await agent.stop(grace_seconds=min(5.0, settings.shutdown_timeout_seconds))

    return ctx


def create_app(settings: Settings) -> web.Application:
    app, _api = create_base_app(service=settings.service_name, version=settings.version)
    app.cleanup_ctx.append(identity_ctx(settings))
    app.cleanup_ctx.append(agent_nats_ctx(settings))
    app.cleanup_ctx.append(kube_ctx(settings))
    app.cleanup_ctx.append(agent_ctx(settings))
    return app
