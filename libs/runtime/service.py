"""Composition helpers: the resources a service opens at start and closes at stop.

Each is an aiohttp `cleanup_ctx` generator (aiohttp-demos style), so a service's
`create_app(settings)` reads as the list of what it needs, and shutdown runs in
reverse order: HTTP stops taking requests, in-flight ones finish, background
workers stop, then the bus drains and the pool closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from libs.contracts.identity import ApiKeyRevoked
from libs.contracts.subjects import Subjects
from libs.runtime import bus as busmod
from libs.runtime import db
from libs.runtime.access import AUDIT, AUTHENTICATOR, Authenticator, KeyDirectory, KeyLookup, bus_key_lookup
from libs.runtime.audit import AuditLog
from libs.runtime.broadcasts import Broadcasts
from libs.runtime.http import ADMIN_TOKEN, METRICS, READY_CHECKS, Api, create_base_app
from libs.runtime.natsauth import NatsUser, RenewableUser
from libs.runtime.ratelimit import PreAuthSettings
from libs.runtime.settings import DatabaseSettings, OwnSchemaSettings, ServiceSettings

log = logging.getLogger(__name__)

BUS = web.AppKey("bus", busmod.Bus)
POOL = web.AppKey("pool", asyncpg.Pool)
TASKS = web.AppKey("background_tasks", list[asyncio.Task[None]])
BROADCASTS = web.AppKey("access_broadcasts", Broadcasts)
"""The `Broadcasts` that `access_ctx` listens on (announce `ApiKeyRevoked` through it)."""


def nats_ctx(
    settings: ServiceSettings, *, ensure_streams: bool = True, user: NatsUser | RenewableUser | None = None
) -> Callable[[web.Application], Any]:
    """Connect as `user` when given (an agent's own NATS identity), else as the settings say."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        nc = await busmod.connect(settings, name=settings.service_name, user=user)
        bus = busmod.Bus(nc, Subjects(settings.bus_prefix), metrics=app.get(METRICS))
        if ensure_streams:
            replicas = busmod.stream_replicas(nc, settings)
            await busmod.ensure_streams(bus.js, bus.subjects.streams, replicas=replicas)
        app[BUS] = bus

        async def check() -> None:
            if not nc.is_connected:
                raise busmod.BusUnavailable("not connected")
            await nc.flush(timeout=2)

        app[READY_CHECKS]["nats"] = check
        yield
        with contextlib.suppress(Exception):
            await nc.drain()
        with contextlib.suppress(Exception):
            await nc.close()

    return ctx


def access_ctx(
    settings: ServiceSettings, *, lookup: Callable[[web.Application], KeyLookup] | None = None
) -> Callable[[web.Application], Any]:
    """Org API keys and the audit trail (after `nats_ctx`, and after whatever `lookup` reads).

    `lookup(app)` gives the key look-up by digest: the orchestrator, which owns the keys, reads
    its own store; every other service leaves it None and asks the orchestrator over the bus.
    Every replica listens for `ApiKeyRevoked` and forgets the key at once."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        bus = app[BUS]
        broadcasts = Broadcasts(bus)
        keys = KeyDirectory(
            lookup=lookup(app) if lookup is not None else bus_key_lookup(bus),
            broadcasts=broadcasts,
            epoch=bus.epoch,
        )
        await broadcasts.listen(bus.subjects.apikeys_revoked, ApiKeyRevoked, keys.revoked)
        await broadcasts.ready()
        app[BROADCASTS] = broadcasts
        app[AUTHENTICATOR] = Authenticator(admin_token=app[ADMIN_TOKEN], keys=keys)
        audit = AuditLog(bus, service=settings.service_name)
        audit.start()
        app[AUDIT] = audit
        yield
        await audit.stop()
        await broadcasts.close()

    return ctx


def postgres_ctx(
    settings: DatabaseSettings, *, schema: str, migrations: Path
) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            try:
                pool = await db.create_pool(dsn, schema=schema, max_size=settings.database_pool_max)
                break
            except db.CONNECTION_ERRORS as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise db.DatabaseUnavailable(
                        f"cannot reach PostgreSQL: {type(exc).__name__}; is it running? (make up starts it)"
                    ) from exc
                await asyncio.sleep(0.5)
        await db.migrate(pool, schema=schema, migrations_dir=migrations)
        app[POOL] = pool
        app[READY_CHECKS]["postgres"] = lambda: db.ping(pool)
        yield
        await pool.close()

    return ctx


def create_service_app(
    settings: OwnSchemaSettings,
    *,
    schema: str,
    migrations: Path,
    client_max_size: int,
    preauth: PreAuthSettings | None = None,
) -> tuple[web.Application, Api]:
    """The opening of a service that keeps its own PostgreSQL schema and takes org API keys:
    the base app, NATS (with the streams: the audit trail goes to the AUDIT stream, even
    before an orchestrator made it), access (keys checked by the orchestrator over NATS) and
    PostgreSQL (`schema` plus the settings' test suffix). The service appends its own parts."""
    app, api = create_base_app(
        service=settings.service_name,
        version=settings.version,
        admin_token=settings.admin_token,
        client_max_size=client_max_size,
        preauth=preauth,
    )
    app.cleanup_ctx.append(nats_ctx(settings))
    app.cleanup_ctx.append(access_ctx(settings))
    app.cleanup_ctx.append(
        postgres_ctx(settings, schema=schema + settings.schema_suffix, migrations=migrations)
    )
    return app, api


def background(
    name: str, factory: Callable[[web.Application], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], Any]:
    """Run `factory(app)` as a task for the app's lifetime; cancel it at shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def guarded() -> None:
            while True:
                try:
                    await factory(app)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("background worker crashed; restarting", extra={"worker": name})
                    await asyncio.sleep(1)

        task = asyncio.create_task(guarded(), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


async def retry_forever(what: str, fn: Callable[[], Awaitable[None]], *, delay: float = 1.0) -> None:
    while True:
        try:
            await fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("retrying", extra={"what": what, "error": repr(exc)})
            await asyncio.sleep(delay)
