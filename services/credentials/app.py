"""Composition root: `create_app(settings)` builds the credentials service for production and tests.

Every part is built here from the settings and handed to the parts that use
it; nothing is global. The use cases exist only while the app runs (they need
the PostgreSQL pool and the NATS connection that earlier cleanup contexts open),
so the RPC handlers start in the same context and the registry session and
Vault client close there too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from libs.oci.registry.auth import AuthFlow
from libs.oci.registry.client import RegistryClient, close_session, new_session
from libs.oci.registry.egress import EgressPolicy
from libs.runtime.http import READY_CHECKS
from libs.runtime.service import BUS, POOL, create_service_app
from libs.runtime.vault import KvStore
from services.credentials.clients.orchestrator import Orchestrator
from services.credentials.entrypoints import routes, rpc
from services.credentials.settings import Settings
from services.credentials.store import ConfigSecretStore, RegistrySecrets, unit_of_work
from services.credentials.usecases import UseCases
from services.credentials.usecases.catalog import Catalog
from services.credentials.usecases.checks import Checks
from services.credentials.usecases.config_secrets import ConfigSecrets
from services.credentials.usecases.pulls import Pulls
from services.credentials.usecases.registries import Registries

MAX_BODY = 64 * 1024
MIGRATIONS = Path(__file__).parent / "migrations"


def _usecases_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with KvStore(settings) as kv:  # renews its own token until it closes
            secrets = RegistrySecrets(kv)
            # One egress policy for the session's resolver and the client's checks
            # (libs/oci/registry/egress.py).
            policy = EgressPolicy.parse(settings.registry_private_hosts, settings.registry_token_hosts)
            session = new_session(
                timeout=settings.registry_timeout_seconds,
                trust_env=settings.registry_proxy_from_env,
                policy=policy,
            )
            client = RegistryClient(AuthFlow(session, insecure=settings.insecure_registries, policy=policy))
            uow = unit_of_work(app[POOL])
            catalog = Catalog(uow)
            orchestrator = Orchestrator(app[BUS], timeout=settings.rpc_timeout_seconds)
            usecases = UseCases(
                catalog=catalog,
                registries=Registries(uow=uow, secrets=secrets, catalog=catalog, orchestrator=orchestrator),
                checks=Checks(secrets=secrets, catalog=catalog, client=client),
                pulls=Pulls(catalog=catalog, secrets=secrets, client=client, orchestrator=orchestrator),
            )
            app[routes.USECASES] = usecases
            app[READY_CHECKS]["vault"] = kv.check
            config_secrets = ConfigSecrets(secrets=ConfigSecretStore(kv), orchestrator=orchestrator)
            await rpc.serve(app[BUS], usecases.pulls, config_secrets)
            yield
            await close_session(session)

    return ctx


def create_app(settings: Settings) -> web.Application:
    app, api = create_service_app(
        settings,
        client_max_size=MAX_BODY,
        schema="credentials",
        migrations=MIGRATIONS,
    )
    app.cleanup_ctx.append(_usecases_ctx(settings))
    routes.add_routes(api)
    return app
