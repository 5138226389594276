"""Composition root: `create_app(settings)` builds the credentials service for production and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from libs.runtime.http import READY_CHECKS, create_base_app
from libs.runtime.service import BUS, POOL, nats_ctx, postgres_ctx
from services.credentials import api, rpc
from services.credentials.models import (
    AuditList,
    RegistryCreate,
    RegistryList,
    RegistryOut,
    RegistryUpdate,
    TestRequest,
    TestResult,
)
from services.credentials.registries import Registries
from services.credentials.registry_client import RegistryClient, close_session
from services.credentials.repository import Repository
from services.credentials.settings import Settings
from services.credentials.vault import RegistrySecrets

MAX_BODY = 64 * 1024
REGISTRY = "/v1/orgs/{org}/registries/{id}"


def _registries_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        secrets = RegistrySecrets(settings)
        session = RegistryClient.new_session(
            timeout=settings.registry_timeout_seconds, trust_env=settings.registry_proxy_from_env
        )
        registries = Registries(
            repo=Repository(app[POOL]),
            secrets=secrets,
            client=RegistryClient(session, insecure=settings.insecure_registries),
            bus=app[BUS],
            rpc_timeout=settings.rpc_timeout_seconds,
        )
        app[api.REGISTRIES] = registries
        app[READY_CHECKS]["vault"] = secrets.check
        await rpc.serve(app[BUS], registries)
        yield
        await close_session(session)
        secrets.close()

    return ctx


def create_app(settings: Settings) -> web.Application:
    app, routes = create_base_app(
        service=settings.service_name,
        version=settings.version,
        admin_token=settings.admin_token,
        client_max_size=MAX_BODY,
    )
    app.cleanup_ctx.append(nats_ctx(settings, ensure_streams=False))
    app.cleanup_ctx.append(
        postgres_ctx(
            settings,
            schema="credentials" + settings.schema_suffix,
            migrations=Path(__file__).parent / "migrations",
        )
    )
    app.cleanup_ctx.append(_registries_ctx(settings))

    routes.route(
        "POST",
        "/v1/orgs/{org}/registries",
        api.create_registry,
        summary="register a container registry; its password or Docker config goes to Vault (write-only)",
        request=RegistryCreate,
        responses={201: RegistryOut},
    )
    routes.route(
        "GET",
        "/v1/orgs/{org}/registries",
        api.list_registries,
        summary="the org's registries (never a secret)",
        responses={200: RegistryList},
    )
    routes.route("GET", REGISTRY, api.get_registry, summary="one registry", responses={200: RegistryOut})
    routes.route(
        "PATCH",
        REGISTRY,
        api.update_registry,
        summary="rename and/or rotate credentials (same auth type and host; a new Vault version)",
        request=RegistryUpdate,
        responses={200: RegistryOut},
    )
    routes.route(
        "DELETE",
        REGISTRY,
        api.delete_registry,
        summary="delete the registry and destroy every version of its secret; 409 while components use it",
        responses={204: None},
    )
    routes.route(
        "POST",
        REGISTRY + "/test",
        api.test_registry,
        summary="log in to the registry with the stored credentials (and check pull access to a repository)",
        request=TestRequest,
        responses={200: TestResult},
    )
    routes.route(
        "GET",
        REGISTRY + "/audit",
        api.registry_audit,
        summary="who created, rotated, tested or deleted this registry, newest first",
        responses={200: AuditList},
        query=_PAGE,
    )
    routes.route(
        "GET",
        "/v1/orgs/{org}/audit",
        api.org_audit,
        summary="the org's registry audit trail, newest first",
        responses={200: AuditList},
        query=_PAGE,
    )
    return app


_PAGE: dict[str, dict[str, Any]] = {
    "before": {"type": "integer", "description": "only events with a smaller id (next_before of a page)"},
    "limit": {"type": "integer", "minimum": 1, "maximum": api.AUDIT_PAGE_MAX, "default": 100},
}
