"""Composition root: `create_app(settings)` builds the whole orchestrator; the tests call it too.

Start order: NATS (and the streams), PostgreSQL (and migrations), then who may
call (org API keys looked up in our own store, never over the bus to ourselves;
revocation broadcasts; the audit log), then the use cases with the RPC servers and
the heartbeat subscription, then the background workers (intake, status, audit,
sweeper). Shutdown runs in reverse. Vault is not a readiness check: only a config
change with secrets needs it (write-only), and without it that one request answers 503.

Before any of it, `create_app` loads the key that signs commands to agents
(`command_keys`): without one it refuses to build the app at all, saying which
setting to give, because an orchestrator that cannot sign would only send
commands every agent refuses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from libs.contracts import signing
from libs.runtime.broadcasts import Broadcasts
from libs.runtime.bus import Bus
from libs.runtime.http import METRICS, create_base_app
from libs.runtime.natsauth import NKey
from libs.runtime.service import BROADCASTS, BUS, POOL, access_ctx, background, nats_ctx, postgres_ctx
from libs.runtime.vault import KvStore
from services.orchestrator.clients.agents import AgentNatsIssuer, Agents, CommandKeys
from services.orchestrator.clients.credentials import Credentials
from services.orchestrator.clients.gateways import Gateways
from services.orchestrator.clients.nats_accounts import AccountPublisher
from services.orchestrator.entrypoints import HEARTBEAT_FRESH, USECASES, UseCases, consumers, routes, rpc
from services.orchestrator.settings import Settings
from services.orchestrator.store import Store, open_store
from services.orchestrator.store.secrets import ConfigSecrets
from services.orchestrator.usecases.access import ApiKeys, AuditTrail, key_lookup
from services.orchestrator.usecases.catalog import Catalog
from services.orchestrator.usecases.configs import Configs
from services.orchestrator.usecases.dataplanes import DataPlanes
from services.orchestrator.usecases.deployments import Deployments
from services.orchestrator.usecases.dispatch import Dispatcher
from services.orchestrator.usecases.executions import Executions
from services.orchestrator.usecases.intake import Intake
from services.orchestrator.usecases.recording import Recorder
from services.orchestrator.usecases.reports import Reports
from services.orchestrator.usecases.sweep import Sweeper
from services.orchestrator.usecases.teardowns import Teardowns

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def _nats_issuer(settings: Settings, bus: Bus) -> AgentNatsIssuer | None:
    """Agents get their own NATS users only when we hold the account's signing key."""
    if settings.nats_account_signing_seed is None:
        return None
    return AgentNatsIssuer(
        signing_seed=settings.nats_account_signing_seed.get_secret_value(),
        account=settings.nats_account,
        subjects=bus.subjects,
        ttl_seconds=settings.agent_jwt_ttl_seconds,
    )


def _account_publisher(settings: Settings, issuer: AgentNatsIssuer | None) -> AccountPublisher | None:
    """Revocations need the operator's signing key and a system user that may push the account."""
    if issuer is None:
        return None
    if settings.nats_operator_signing_seed is None or settings.nats_system_creds_file is None:
        log.warning(
            "agent NATS users cannot be revoked (a re-enrolled or deleted data plane's old agent keeps"
            " its JWT until it expires): set LANDFALL_NATS_OPERATOR_SIGNING_SEED and"
            " LANDFALL_NATS_SYSTEM_CREDS_FILE"
        )
        return None
    return AccountPublisher(
        settings=settings.model_copy(update={"nats_creds_file": settings.nats_system_creds_file}),
        operator_signer=NKey.from_seed(
            settings.nats_operator_signing_seed.get_secret_value(), kind="operator"
        ),
        account=issuer.account,
        account_signing_keys=(issuer.signing_key,),
    )


class SigningKeyMissing(RuntimeError):
    """The orchestrator has no (usable) key to sign commands with; the message says what to set."""


def command_keys(settings: Settings) -> CommandKeys:
    """The signing key from `command_signing_seed` or `command_signing_seed_file`, and the next public
    key when rotating. Neither seed set, or one unusable: `SigningKeyMissing` (no seed in the message)."""
    seed: str | bytes | None = None
    if settings.command_signing_seed is not None:
        seed = settings.command_signing_seed.get_secret_value()
    elif settings.command_signing_seed_file is not None:
        try:
            seed = settings.command_signing_seed_file.read_bytes()
        except OSError as exc:
            raise SigningKeyMissing(
                f"cannot read LANDFALL_COMMAND_SIGNING_SEED_FILE {settings.command_signing_seed_file}:"
                f" {exc.strerror}"
            ) from None
    if seed is None:
        raise SigningKeyMissing(
            "the orchestrator signs every command it sends to agents and has no key: set"
            " LANDFALL_COMMAND_SIGNING_SEED (base64 of a 32-byte Ed25519 seed) or"
            " LANDFALL_COMMAND_SIGNING_SEED_FILE; make one with"
            " `python -c 'from libs.contracts.signing import new_seed; print(new_seed())'`"
        )
    try:
        key = signing.signing_key(seed)
    except signing.InvalidKey as exc:
        raise SigningKeyMissing(f"the command signing seed is unusable: {exc}") from None
    if settings.command_next_public_key is not None:
        try:
            signing.parse_public_key(settings.command_next_public_key)
        except signing.InvalidKey as exc:
            raise SigningKeyMissing(f"LANDFALL_COMMAND_NEXT_PUBLIC_KEY is unusable: {exc}") from None
    return CommandKeys(signer=key, next_public_key=settings.command_next_public_key)


def build_usecases(
    settings: Settings,
    *,
    bus: Bus,
    store: Store,
    metrics: CollectorRegistry,
    broadcasts: Broadcasts,
    keys: CommandKeys,
    kv: KvStore,
) -> UseCases:
    credentials = Credentials(bus, timeout=settings.rpc_timeout_seconds)
    issuer = _nats_issuer(settings, bus)
    agents = Agents(bus, keys=keys, issuer=issuer)
    gateways = Gateways(bus, metrics=metrics)
    dispatcher = Dispatcher(
        store=store,
        credentials=credentials,
        agents=agents,
        gateways=gateways,
        retry_seconds=settings.sweep_interval_seconds,
        max_retry_seconds=settings.max_retry_seconds,
        registry_unreachable_seconds=settings.registry_unreachable_seconds,
    )
    recorder = Recorder(store=store, gateways=gateways, dispatcher=dispatcher)
    teardowns = Teardowns(store=store, agents=agents)
    catalog = Catalog(store=store, credentials=credentials, gateways=gateways, teardowns=teardowns)
    return UseCases(
        catalog=catalog,
        dataplanes=DataPlanes(
            store=store,
            catalog=catalog,
            agents=agents,
            accounts=_account_publisher(settings, issuer),
            enrollment_token_ttl_seconds=settings.enrollment_token_ttl_seconds,
            # never so rare that a live plane would look disconnected
            heartbeat_write_seconds=min(
                settings.heartbeat_write_seconds, settings.heartbeat_fresh_seconds / 2
            ),
        ),
        intake=Intake(store=store, recorder=recorder, dispatcher=dispatcher),
        deployments=Deployments(store=store, recorder=recorder),
        executions=Executions(store=store, recorder=recorder, dispatcher=dispatcher),
        reports=Reports(store=store, gateways=gateways, recorder=recorder),
        sweeper=Sweeper(store=store, dispatcher=dispatcher, teardowns=teardowns),
        api_keys=ApiKeys(store=store, catalog=catalog, broadcasts=broadcasts),
        audit=AuditTrail(store=store, catalog=catalog),
        configs=Configs(store=store, secrets=ConfigSecrets(kv), recorder=recorder),
    )


def _usecases_ctx(settings: Settings, keys: CommandKeys) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        bus = app[BUS]
        async with KvStore(settings) as kv:  # renews its own token until it closes
            usecases = build_usecases(
                settings,
                bus=bus,
                store=open_store(app[POOL]),
                metrics=app[METRICS],
                broadcasts=app[BROADCASTS],
                keys=keys,
                kv=kv,
            )
            log.info(
                "signing commands",
                extra={
                    "key_id": keys.key_id,
                    "announced": [signing.key_id(signing.parse_public_key(k)) for k in keys.announced],
                },
            )
            app[USECASES] = usecases
            await rpc.serve_rpcs(bus, usecases)
            await consumers.subscribe_heartbeats(bus, usecases)
            # The database holds the revocations: a nats-server that lost them (or a preloaded account
            # JWT put back) has them again now.
            await usecases.dataplanes.push_revocations()
            yield
            if usecases.dataplanes.accounts is not None:
                await usecases.dataplanes.accounts.close()

    return ctx


def create_app(settings: Settings) -> web.Application:
    keys = command_keys(settings)  # first: without a signing key there is nothing to start
    app, api = create_base_app(
        service=settings.service_name, version=settings.version, admin_token=settings.admin_token
    )
    app[HEARTBEAT_FRESH] = timedelta(seconds=settings.heartbeat_fresh_seconds)
    app.cleanup_ctx.append(nats_ctx(settings))
    app.cleanup_ctx.append(
        postgres_ctx(settings, schema="orchestrator" + settings.schema_suffix, migrations=MIGRATIONS)
    )
    app.cleanup_ctx.append(access_ctx(settings, lookup=lambda app: key_lookup(open_store(app[POOL]))))
    app.cleanup_ctx.append(_usecases_ctx(settings, keys))
    concurrency = settings.consumer_concurrency

    def consume(durable: str) -> Callable[[web.Application], Coroutine[Any, Any, None]]:
        async def run(app: web.Application) -> None:
            await consumers.consume(app[BUS], app[USECASES], durable, concurrency=concurrency)

        return run

    async def sweeper(app: web.Application) -> None:
        await app[USECASES].sweeper.forever(interval=settings.sweep_interval_seconds)

    async def update_agent_consumers(app: web.Application) -> None:
        # consumers made by an older orchestrator get today's settings, without delaying the start
        await app[USECASES].dataplanes.update_agent_consumers()

    for durable in consumers.DURABLES:  # each task named as its durable consumer
        app.cleanup_ctx.append(background(durable, consume(durable)))
    app.cleanup_ctx.append(background("orchestrator-sweeper", sweeper))
    app.cleanup_ctx.append(background("agent-consumer-update", update_agent_consumers))
    routes.register(api)
    return app
