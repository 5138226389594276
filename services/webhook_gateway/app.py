"""Composition root: `create_app(settings)` builds the gateway for production and for tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import nats.errors
from aiohttp import web
from nats.aio.msg import Msg
from prometheus_client import Counter
from pydantic import ValidationError

from libs.contracts.messages import ComponentChanged, TokenRevoked
from libs.runtime.http import METRICS, create_base_app
from libs.runtime.service import BUS, POOL, background, nats_ctx, postgres_ctx
from services.webhook_gateway import api
from services.webhook_gateway.api import GATEWAY, Gateway
from services.webhook_gateway.auth import TokenAuthenticator
from services.webhook_gateway.components import ComponentDirectory
from services.webhook_gateway.model import Binding
from services.webhook_gateway.models import (
    CiSnippets,
    DeployAccepted,
    DeploymentOut,
    DeployRequest,
    SigningSecretCreated,
    SigningStatus,
    TokenCreate,
    TokenCreated,
    TokenList,
)
from services.webhook_gateway.ratelimit import RateLimiter
from services.webhook_gateway.repository import Repository
from services.webhook_gateway.settings import Settings
from services.webhook_gateway.vault import SigningSecretStore

log = logging.getLogger(__name__)

WEBHOOK_MAX_BODY = 64 * 1024
COMPONENT = "/v1/orgs/{org}/projects/{project}/components/{component}"


def _gateway_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        bus = app[BUS]
        repo = Repository(app[POOL])
        secrets = SigningSecretStore(settings)

        def epoch() -> int | None:
            # Caches are trusted only while connected, and only since the last reconnect.
            nc = bus.nc
            return int(nc.stats.get("reconnects", 0)) if nc.is_connected else None

        registry = app[METRICS]
        gw = Gateway(
            settings=settings,
            bus=bus,
            repo=repo,
            auth=TokenAuthenticator(
                repo,
                touch_interval=settings.last_used_interval_seconds,
                epoch=epoch,
                checks=Counter(
                    "landfall_gateway_token_checks_total", "CI token checks", ["result"], registry=registry
                ),
                lookups=Counter(
                    "landfall_gateway_token_db_lookups_total", "CI token database lookups", registry=registry
                ),
            ),
            directory=ComponentDirectory(
                bus, repo, secrets, max_age=settings.cache_max_age_seconds, epoch=epoch
            ),
            limiter=RateLimiter(rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst),
            secrets=secrets,
            webhooks=Counter(
                "landfall_gateway_webhooks_total",
                "deploy webhooks by outcome",
                ["outcome"],
                registry=registry,
            ),
        )
        app[GATEWAY] = gw
        # Vault is deliberately not a readiness check: only components that require signatures need
        # it (and their secrets are cached), so a Vault outage must not take every replica out of
        # the load balancer and stop all CI deploys. Those requests answer 503 on their own.

        async def on_revoked(msg: Msg) -> None:
            try:
                gw.auth.revoked(TokenRevoked.model_validate_json(msg.data).token_id)
            except ValidationError:
                log.warning("ignored a malformed TokenRevoked")

        async def on_component_changed(msg: Msg) -> None:
            try:
                changed = ComponentChanged.model_validate_json(msg.data)
            except ValidationError:
                log.warning("ignored a malformed ComponentChanged")
                return
            gw.directory.forget(Binding(changed.org, changed.project, changed.component))

        subs = [
            await bus.nc.subscribe(bus.subjects.tokens_revoked, cb=on_revoked),
            await bus.nc.subscribe(bus.subjects.components_changed, cb=on_component_changed),
        ]
        await bus.nc.flush(timeout=5)
        yield
        for sub in subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        secrets.close()

    return ctx


async def _prune_loop(app: web.Application) -> None:
    gw = app[GATEWAY]
    window = timedelta(seconds=gw.settings.replay_window_seconds)
    while True:
        await asyncio.sleep(60)
        try:
            await gw.repo.prune(replay_window=window)
        except Exception as exc:  # the next round tries again
            log.warning("pruning webhook ids failed", extra={"error": type(exc).__name__})


def create_app(settings: Settings) -> web.Application:
    app, routes = create_base_app(
        service=settings.service_name,
        version=settings.version,
        admin_token=settings.admin_token,
        client_max_size=WEBHOOK_MAX_BODY,
    )
    app.cleanup_ctx.append(nats_ctx(settings))
    app.cleanup_ctx.append(
        postgres_ctx(
            settings,
            schema="webhook_gateway" + settings.schema_suffix,
            migrations=Path(__file__).parent / "migrations",
        )
    )
    app.cleanup_ctx.append(_gateway_ctx(settings))
    app.cleanup_ctx.append(background("prune-webhook-ids", _prune_loop))

    routes.route(
        "POST",
        COMPONENT + "/tokens",
        api.create_token,
        summary="create a CI token for the component (the token is shown once)",
        request=TokenCreate,
        responses={201: TokenCreated},
    )
    routes.route(
        "GET",
        COMPONENT + "/tokens",
        api.list_tokens,
        summary="list the component's CI tokens (never the token itself)",
        responses={200: TokenList},
    )
    routes.route(
        "DELETE",
        COMPONENT + "/tokens/{id}",
        api.revoke_token,
        summary="revoke a CI token; it stops working at once on every replica",
        responses={204: None},
    )
    routes.route(
        "POST",
        COMPONENT + "/signing-secret",
        api.create_signing_secret,
        summary="create or rotate the signing secret (shown once); webhooks must then be signed",
        responses={201: SigningSecretCreated},
    )
    routes.route(
        "GET",
        COMPONENT + "/signing-secret",
        api.get_signing_secret,
        summary="whether the component's webhooks must be signed",
        responses={200: SigningStatus},
    )
    routes.route(
        "DELETE",
        COMPONENT + "/signing-secret",
        api.delete_signing_secret,
        summary="stop requiring signatures and delete the secret",
        responses={204: None},
    )
    routes.route(
        "GET",
        COMPONENT + "/ci-snippets",
        api.ci_snippets,
        summary="ready-to-paste CI snippets: bash/curl, GitHub Actions, GitLab CI",
        responses={200: CiSnippets},
    )
    routes.route(
        "POST",
        "/v1/webhooks/deploy",
        api.deploy,
        summary="deploy an image of the token's component (exactly one of image, tag, digest)",
        auth="ci",
        request=DeployRequest,
        responses={202: DeployAccepted},
    )
    routes.route(
        "GET",
        "/v1/webhooks/deployments/{id}",
        api.get_deployment,
        summary="a deployment of the token's component; ?wait=N long-polls until it is final",
        auth="ci",
        responses={200: DeploymentOut},
        query={"wait": {"type": "integer", "minimum": 0, "maximum": settings.long_poll_max_seconds}},
    )
    return app
