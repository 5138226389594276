"""Composition root: `create_app(settings)` builds the console for production and for tests.

The console is a backend-for-frontend: it owns no data (no PostgreSQL, no Vault) and no credential
of its own for the API. Its parts: one HTTP client pool to `LANDFALL_URL`, the in-memory sessions,
the Jinja templates, and a NATS subscription to deployment notices that feeds the live pages
(publish rights: none, `libs/runtime/natsperms.py`). NATS is a readiness check: without it, pages
still work but stop being live, and a load balancer should prefer a replica that is.

`clock` is the sessions' clock (tests move it to expire a session instead of waiting).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from libs.runtime.access import PREAUTH
from libs.runtime.http import create_base_app
from libs.runtime.service import BUS, nats_ctx
from services.console.clients import notices
from services.console.clients.landfall import Landfall, client_address_var
from services.console.entrypoints import routes
from services.console.entrypoints.web import CONSOLE, FEED, SESSIONS, SETTINGS, SIGN_IN
from services.console.settings import Settings
from services.console.usecases.live import Feed
from services.console.usecases.pages import Console
from services.console.usecases.sessions import Clock, SessionStore, SignIn

TEMPLATES = Path(__file__).parent / "templates"
HTTP = web.AppKey("console_http", aiohttp.ClientSession)


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    app, api = create_base_app(
        service=settings.service_name, version=settings.version, client_max_size=256 * 1024
    )
    app[SETTINGS] = settings
    sessions = SessionStore(ttl=settings.session_ttl_seconds, idle=settings.session_idle_seconds)
    if clock is not None:
        sessions.clock = clock
    app[SESSIONS] = sessions
    app[FEED] = Feed()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html",), default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["static"] = lambda name: app.router["static"].url_for(filename=name)
    env.globals["zip"] = zip
    app.cleanup_ctx.append(nats_ctx(settings, ensure_streams=False))
    app.cleanup_ctx.append(_api_ctx(settings))
    app.cleanup_ctx.append(_notices_ctx)
    routes.register(api)

    @web.middleware
    async def client_address(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = client_address_var.set(request.app[PREAUTH].address(request))
        try:
            return await handler(request)
        finally:
            client_address_var.reset(token)

    app.middlewares.append(client_address)

    async def end_streams(app: web.Application) -> None:
        app[FEED].close()

    app.on_shutdown.append(end_streams)
    return app


def _api_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=settings.api_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            app[HTTP] = http
            api = Landfall(
                http,
                base_url=settings.url,
                services={
                    "credentials": settings.credentials_url,
                    "gateway": settings.gateway_url,
                    "orchestrator": settings.orchestrator_url,
                },
            )
            app[CONSOLE] = Console(api)
            app[SIGN_IN] = SignIn(api=api, sessions=app[SESSIONS])
            yield

    return ctx


async def _notices_ctx(app: web.Application) -> AsyncIterator[None]:
    sub = await notices.subscribe(app[BUS], app[FEED].notice)
    yield
    await notices.unsubscribe(sub)
