"""Composition root: `create_app(settings)` builds the gateway for production and for tests.

It builds every part from the settings once (store, clients, caches, use
cases), wires them into one `Gateway`, subscribes to the broadcasts and
declares the routes. Vault is deliberately not a readiness check: only
components that require signatures need it (and their secrets are cached), so a
Vault outage must not take every replica out of the load balancer and stop all
CI deploys; those requests answer 503 on their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from libs.contracts.messages import ComponentInfo
from libs.runtime.broadcasts import Broadcasts
from libs.runtime.bus import Bus
from libs.runtime.cache import BroadcastCache
from libs.runtime.http import METRICS
from libs.runtime.ratelimit import RateLimiter
from libs.runtime.service import BUS, POOL, background, create_service_app
from libs.runtime.vault import KvStore
from services.webhook_gateway.clients.intake_stream import IntakeStream
from services.webhook_gateway.clients.orchestrator import Orchestrator
from services.webhook_gateway.domain.records import Binding, SigningState
from services.webhook_gateway.entrypoints import broadcasts, timers
from services.webhook_gateway.entrypoints.routes import GATEWAY, SETTINGS, add_routes
from services.webhook_gateway.settings import Settings
from services.webhook_gateway.store import SigningSecrets, StoreUnit, unit_of_work
from services.webhook_gateway.usecases import Gateway
from services.webhook_gateway.usecases.authentication import CachedToken, CiAccess, TokenAuthenticator
from services.webhook_gateway.usecases.components import ComponentDirectory
from services.webhook_gateway.usecases.intake import Intake
from services.webhook_gateway.usecases.signing import SigningAdmin
from services.webhook_gateway.usecases.snippets import Snippets
from services.webhook_gateway.usecases.status import DeploymentStatus
from services.webhook_gateway.usecases.tokens import TokenAdmin

WEBHOOK_MAX_BODY = 64 * 1024
MIGRATIONS = Path(__file__).parent / "migrations"


def build(
    settings: Settings, *, bus: Bus, uow: StoreUnit, secrets: SigningSecrets, registry: CollectorRegistry
) -> Gateway:
    """Every part of the gateway, wired (no I/O here: connections are made by the app's contexts)."""
    shared = Broadcasts(bus)
    orchestrator = Orchestrator(bus)
    max_age = settings.cache_max_age_seconds
    infos: BroadcastCache[Binding, ComponentInfo] = BroadcastCache(epoch=bus.epoch, max_age=max_age)
    signing: BroadcastCache[Binding, SigningState] = BroadcastCache(epoch=bus.epoch, max_age=max_age)
    directory = ComponentDirectory(
        orchestrator=orchestrator,
        uow=uow,
        secrets=secrets,
        infos=shared.register(infos),
        signing_states=shared.register(signing),
    )
    tokens: BroadcastCache[bytes, CachedToken] = BroadcastCache(epoch=bus.epoch)
    auth = TokenAuthenticator(
        uow.now.tokens,
        cache=shared.register(tokens),
        touch_interval=settings.last_used_interval_seconds,
        checks=Counter(
            "landfall_gateway_token_checks_total", "CI token checks", ["result"], registry=registry
        ),
        lookups=Counter(
            "landfall_gateway_token_db_lookups_total", "CI token database lookups", registry=registry
        ),
    )
    limiter = RateLimiter(rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst)
    return Gateway(
        bus=bus,
        broadcasts=shared,
        auth=auth,
        access=CiAccess(broadcasts=shared, auth=auth, limiter=limiter),
        directory=directory,
        intake=Intake(
            uow=uow,
            stream=IntakeStream(bus),
            directory=directory,
            webhooks=Counter(
                "landfall_gateway_webhooks_total",
                "deploy webhooks by outcome",
                ["outcome"],
                registry=registry,
            ),
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
            replay_window=timedelta(seconds=settings.replay_window_seconds),
            signature_tolerance=settings.signature_tolerance_seconds,
        ),
        status=DeploymentStatus(orchestrator=orchestrator, uow=uow),
        tokens=TokenAdmin(uow=uow, directory=directory, auth=auth, broadcasts=shared),
        signing=SigningAdmin(uow=uow, secrets=secrets, directory=directory, broadcasts=shared),
        snippets=Snippets(directory=directory, public_url=settings.public_url),
    )


def _gateway_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with KvStore(settings) as kv:  # renews its own token until it closes
            gw = build(
                settings,
                bus=app[BUS],
                uow=unit_of_work(app[POOL]),
                secrets=SigningSecrets(kv),
                registry=app[METRICS],
            )
            app[GATEWAY] = gw
            await broadcasts.listen(gw)
            yield
            await gw.broadcasts.close()

    return ctx


def create_app(settings: Settings) -> web.Application:
    app, api = create_service_app(
        settings,
        client_max_size=WEBHOOK_MAX_BODY,
        schema="webhook_gateway",
        migrations=MIGRATIONS,
        preauth=settings,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_gateway_ctx(settings))
    app.cleanup_ctx.append(background("prune-webhook-ids", timers.prune_webhook_ids))
    add_routes(api, settings)
    return app
