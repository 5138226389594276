"""The credentials HTTP API: the route table and thin handlers (decode, call a use case, encode).

Every route needs the admin token (checked by `Api.route`), so the actor in the
audit trail is "admin". Use cases raise domain errors, which the shared
middleware renders as RFC 9457 problems. What is subtle:

* Bodies are validated here, but a 422 names API fields (`auth.password`, not
  pydantic's `auth.basic.password`): see `schemas.pydantic_errors`.
* PATCH and `/test` look the registry up before reading the body, so an
  unknown registry is a 404 even when the body is also wrong.
* A refused DELETE carries `components` in its problem body: the one problem
  member the shared middleware does not know, added here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from libs.runtime.errors import Invalid, ProblemError
from libs.runtime.http import Api, json_response, path_name, read_json
from services.credentials.domain import RegistryInUse, RuleViolation
from services.credentials.schemas import (
    AuditEventOut,
    AuditList,
    RegistryCreate,
    RegistryList,
    RegistryOut,
    RegistryUpdate,
    TestRequest,
    TestResult,
    pydantic_errors,
)
from services.credentials.usecases import UseCases

USECASES = web.AppKey("credentials", UseCases)
ADMIN_ACTOR = "admin"
AUDIT_PAGE_MAX = 500
EVENT_ID_MAX = 2**63 - 1  # audit event ids are a PostgreSQL bigint
REGISTRIES = "/v1/orgs/{org}/registries"
REGISTRY = REGISTRIES + "/{id}"
PAGE: dict[str, dict[str, Any]] = {
    "before": {"type": "integer", "description": "only events with a smaller id (next_before of a page)"},
    "limit": {"type": "integer", "minimum": 1, "maximum": AUDIT_PAGE_MAX, "default": 100},
}

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _AnyObject(BaseModel):
    """Only checks that the body is a JSON object (content type, syntax): see `_read`."""


async def _read(request: web.Request, model: type[M]) -> M:
    """Like `read_json`, but errors name API fields (`auth.password`, not `auth.basic.password`)."""
    await read_json(request, _AnyObject)  # 415 / 400 / 422-not-an-object, with the shared wording
    data = json.loads(await request.read())  # aiohttp keeps the body; it is valid JSON by now
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RuleViolation(pydantic_errors(exc)) from None


def _out(registry: object) -> RegistryOut:
    return RegistryOut.model_validate(registry, from_attributes=True)


def _use(request: web.Request) -> UseCases:
    return request.app[USECASES]


async def create_registry(request: web.Request) -> web.Response:
    """register a container registry; its password or Docker config goes to Vault (write-only)"""
    org = path_name(request, "org")
    body = await _read(request, RegistryCreate)
    registry = await _use(request).registries.create(
        org, name=body.display_name, auth=body.auth.to_domain(), actor=ADMIN_ACTOR
    )
    return json_response(_out(registry), status=201)


async def list_registries(request: web.Request) -> web.Response:
    """the org's registries (never a secret)"""
    registries = await _use(request).catalog.list_registries(path_name(request, "org"))
    return json_response(RegistryList(items=[_out(r) for r in registries]))


async def get_registry(request: web.Request) -> web.Response:
    """one registry"""
    org = path_name(request, "org")
    return json_response(_out(await _use(request).catalog.get(org, request.match_info["id"])))


async def update_registry(request: web.Request) -> web.Response:
    """rename and/or rotate credentials (same auth type and host; a new Vault version)"""
    org = path_name(request, "org")
    registry_id = request.match_info["id"]
    await _use(request).catalog.get(org, registry_id)
    body = await _read(request, RegistryUpdate)
    registry = await _use(request).registries.update(
        org,
        registry_id,
        name=body.display_name,
        auth=body.auth.to_domain() if body.auth is not None else None,
        actor=ADMIN_ACTOR,
    )
    return json_response(_out(registry))


async def delete_registry(request: web.Request) -> web.Response:
    """delete the registry and destroy every version of its secret; 409 while components use it"""
    org = path_name(request, "org")
    try:
        await _use(request).registries.delete(org, request.match_info["id"], actor=ADMIN_ACTOR)
    except RegistryInUse as exc:
        problem = ProblemError.from_domain(exc)
        problem.extra["components"] = exc.components
        raise problem from None
    return web.Response(status=204)


async def test_registry(request: web.Request) -> web.Response:
    """log in to the registry with the stored credentials (and check pull access to a repository)"""
    org = path_name(request, "org")
    registry_id = request.match_info["id"]
    await _use(request).catalog.get(org, registry_id)
    # The body is optional: `POST .../test` with nothing checks the login only.
    body = await _read(request, TestRequest) if request.body_exists else TestRequest()
    result = await _use(request).checks.test(org, registry_id, body.repository, actor=ADMIN_ACTOR)
    return json_response(TestResult(ok=result.ok, detail=result.detail))


def _page(request: web.Request) -> tuple[int | None, int]:
    try:
        before = int(request.query["before"]) if "before" in request.query else None
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise ProblemError(
            422,
            "Validation Failed",
            "before and limit must be integers",
            kind="validation-failed",
            errors=[{"field": "query", "message": "before and limit must be integers"}],
        ) from None
    if before is not None and not 0 < before <= EVENT_ID_MAX:
        raise Invalid("before", f"an event id: a whole number from 1 to {EVENT_ID_MAX}")
    return before, max(1, min(limit, AUDIT_PAGE_MAX))


async def _audit(request: web.Request, registry_id: str | None) -> web.Response:
    org = path_name(request, "org")
    before, limit = _page(request)
    events = await _use(request).catalog.audit_events(
        org, registry_id=registry_id, before=before, limit=limit
    )
    next_before = events[-1].id if len(events) == limit else None
    items = [AuditEventOut.model_validate(e, from_attributes=True) for e in events]
    return json_response(AuditList(items=items, next_before=next_before))


async def registry_audit(request: web.Request) -> web.Response:
    """who created, rotated, tested or deleted this registry, newest first"""
    return await _audit(request, request.match_info["id"])


async def org_audit(request: web.Request) -> web.Response:
    """the org's registry audit trail, newest first"""
    return await _audit(request, None)


def add_routes(api: Api) -> None:
    """Declare every route; a route's summary in the OpenAPI document is its handler's docstring."""
    routes: list[tuple[str, str, Handler, type[BaseModel] | None, dict[int, type[BaseModel] | None]]] = [
        ("POST", REGISTRIES, create_registry, RegistryCreate, {201: RegistryOut}),
        ("GET", REGISTRIES, list_registries, None, {200: RegistryList}),
        ("GET", REGISTRY, get_registry, None, {200: RegistryOut}),
        ("PATCH", REGISTRY, update_registry, RegistryUpdate, {200: RegistryOut}),
        ("DELETE", REGISTRY, delete_registry, None, {204: None}),
        ("POST", REGISTRY + "/test", test_registry, TestRequest, {200: TestResult}),
        ("GET", REGISTRY + "/audit", registry_audit, None, {200: AuditList}),
        ("GET", "/v1/orgs/{org}/audit", org_audit, None, {200: AuditList}),
    ]
    for method, path, handler, request, responses in routes:
        api.route(
            method,
            path,
            handler,
            summary=handler.__doc__ or "",
            request=request,
            responses=responses,
            query=PAGE if handler in (registry_audit, org_audit) else None,
        )
