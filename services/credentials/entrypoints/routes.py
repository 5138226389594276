"""The credentials HTTP API: the route table and thin handlers (decode, call a use case, encode).

The table says who may call each route (API.md, "Identity and roles"): every GET
a viewer of the org, every change an owner (or the platform admin token); the
shared guard (`libs.runtime.access`) checks it and writes each change to the one
audit trail, which the orchestrator serves at `GET /v1/orgs/{org}/audit`. The
handlers name what a change was done to (`audit_target`) and what came of it,
never a secret. Use cases raise domain errors, which the shared middleware
renders as RFC 9457 problems. What is subtle:

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
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from libs.runtime.access import Need, audit_target
from libs.runtime.errors import ProblemError
from libs.runtime.http import Api, json_response, path_name, read_json
from services.credentials.domain import Change, RegistryInUse, RuleViolation
from services.credentials.schemas import (
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
REGISTRIES = "/v1/orgs/{org}/registries"
REGISTRY = REGISTRIES + "/{id}"

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


def _changed(request: web.Request, change: Change, status: int = 200) -> web.Response:
    audit_target(request, change.registry.id, detail=change.detail)
    return json_response(_out(change.registry), status=status)


async def create_registry(request: web.Request) -> web.Response:
    """register a container registry; its password or Docker config goes to Vault (write-only)"""
    org = path_name(request, "org")
    body = await _read(request, RegistryCreate)
    change = await _use(request).registries.create(org, name=body.display_name, auth=body.auth.to_domain())
    return _changed(request, change, status=201)


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
    change = await _use(request).registries.update(
        org,
        registry_id,
        name=body.display_name,
        auth=body.auth.to_domain() if body.auth is not None else None,
    )
    return _changed(request, change)


async def delete_registry(request: web.Request) -> web.Response:
    """delete the registry and destroy every version of its secret; 409 while components use it"""
    org = path_name(request, "org")
    registry_id = request.match_info["id"]
    try:
        await _use(request).registries.delete(org, registry_id)
    except RegistryInUse as exc:
        problem = ProblemError.from_domain(exc)
        problem.extra["components"] = exc.components
        raise problem from None
    audit_target(request, registry_id)
    return web.Response(status=204)


async def test_registry(request: web.Request) -> web.Response:
    """log in to the registry with the stored credentials (and check pull access to a repository)"""
    org = path_name(request, "org")
    registry_id = request.match_info["id"]
    await _use(request).catalog.get(org, registry_id)
    # The body is optional: `POST .../test` with nothing checks the login only.
    body = await _read(request, TestRequest) if request.body_exists else TestRequest()
    result = await _use(request).checks.test(org, registry_id, body.repository)
    audit_target(request, registry_id, detail=("ok: " if result.ok else "not ok: ") + result.detail)
    return json_response(TestResult(ok=result.ok, detail=result.detail))


def add_routes(api: Api) -> None:
    """Declare every route; a route's summary in the OpenAPI document is its handler's docstring."""
    routes: list[
        tuple[str, str, Handler, Need, str, type[BaseModel] | None, dict[int, type[BaseModel] | None]]
    ] = [
        ("POST", REGISTRIES, create_registry, "owner", "registry.create", RegistryCreate, {201: RegistryOut}),
        ("GET", REGISTRIES, list_registries, "viewer", "registry.list", None, {200: RegistryList}),
        ("GET", REGISTRY, get_registry, "viewer", "registry.get", None, {200: RegistryOut}),
        ("PATCH", REGISTRY, update_registry, "owner", "registry.update", RegistryUpdate, {200: RegistryOut}),
        ("DELETE", REGISTRY, delete_registry, "owner", "registry.delete", None, {204: None}),
        ("POST", REGISTRY + "/test", test_registry, "owner", "registry.test", TestRequest, {200: TestResult}),
    ]
    for method, path, handler, need, action, request, responses in routes:
        api.route(
            method,
            path,
            handler,
            summary=handler.__doc__ or "",
            auth=need,
            action=action,
            request=request,
            responses=responses,
        )
