"""Composition root: `create_app(settings)` builds the whole orchestrator.

Start order: NATS (and the streams), PostgreSQL (and migrations), then the
domain objects with the RPC servers and the heartbeat subscription, then the
background workers (intake, status, sweeper). Shutdown runs in reverse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from libs.runtime.bus import Bus
from libs.runtime.http import METRICS, create_base_app
from libs.runtime.service import BUS, POOL, background, nats_ctx, postgres_ctx
from services.orchestrator import api
from services.orchestrator.catalog import Catalog
from services.orchestrator.consumers import (
    INTAKE_DURABLE,
    STATUS_DURABLE,
    intake_handler,
    json_key,
    pull_forever,
    serve_rpcs,
    status_handler,
    subscribe_heartbeats,
    sweep_forever,
)
from services.orchestrator.credentials import Credentials
from services.orchestrator.deployments import Deployer
from services.orchestrator.natsaccess import AgentNatsIssuer
from services.orchestrator.repository import Repository
from services.orchestrator.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def _nats_issuer(settings: Settings, bus: Bus) -> AgentNatsIssuer | None:
    """Agents get their own NATS users only when we hold the account's signing key."""
    if settings.nats_account_signing_seed is None:
        return None
    return AgentNatsIssuer(
        signing_seed=settings.nats_account_signing_seed.get_secret_value(),
        account=settings.nats_account,
        subjects=bus.subjects,
    )


def _domain_ctx(settings: Settings) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        bus, repo = app[BUS], Repository(app[POOL])
        credentials = Credentials(bus, timeout=settings.rpc_timeout_seconds)
        catalog = Catalog(
            repo=repo,
            bus=bus,
            credentials=credentials,
            nats=_nats_issuer(settings, bus),
            enrollment_token_ttl_seconds=settings.enrollment_token_ttl_seconds,
        )
        deployer = Deployer(
            repo=repo,
            bus=bus,
            credentials=credentials,
            retry_seconds=settings.sweep_interval_seconds,
            max_retry_seconds=settings.max_retry_seconds,
            metrics=app[METRICS],
        )
        app[api.CATALOG] = catalog
        app[api.DEPLOYER] = deployer
        await serve_rpcs(bus, catalog, deployer)
        # never so rare that a live plane would look disconnected
        write_every = min(settings.heartbeat_write_seconds, settings.heartbeat_fresh_seconds / 2)
        await subscribe_heartbeats(bus, catalog, write_every=write_every)
        yield

    return ctx


def create_app(settings: Settings) -> web.Application:
    app, routes = create_base_app(
        service=settings.service_name, version=settings.version, admin_token=settings.admin_token
    )
    app[api.HEARTBEAT_FRESH] = timedelta(seconds=settings.heartbeat_fresh_seconds)
    app.cleanup_ctx.append(nats_ctx(settings))
    app.cleanup_ctx.append(
        postgres_ctx(settings, schema="orchestrator" + settings.schema_suffix, migrations=MIGRATIONS)
    )
    app.cleanup_ctx.append(_domain_ctx(settings))

    async def intake(app: web.Application) -> None:
        bus = app[BUS]
        await pull_forever(
            bus,
            stream=bus.subjects.intake_stream.name,
            subject=bus.subjects.image_pushed,
            durable=INTAKE_DURABLE,
            handle=intake_handler(app[api.DEPLOYER]),
            key=json_key("org", "project", "component"),
            concurrency=settings.consumer_concurrency,
        )

    async def status(app: web.Application) -> None:
        bus = app[BUS]
        await pull_forever(
            bus,
            stream=bus.subjects.status_stream.name,
            subject=bus.subjects.all_status,
            durable=STATUS_DURABLE,
            handle=status_handler(app[api.DEPLOYER]),
            key=json_key("deployment_id"),
            concurrency=settings.consumer_concurrency,
        )

    async def sweeper(app: web.Application) -> None:
        await sweep_forever(app[api.DEPLOYER], interval=settings.sweep_interval_seconds)

    app.cleanup_ctx.append(background("orchestrator-intake", intake))
    app.cleanup_ctx.append(background("orchestrator-status", status))
    app.cleanup_ctx.append(background("orchestrator-sweeper", sweeper))
    api.register(routes)
    return app
