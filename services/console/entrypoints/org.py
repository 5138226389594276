"""The org's pages: data planes (enrollment shown once), environments, the audit trail, API keys."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from libs.contracts.identity import ROLES
from services.console.clients.landfall import ApiProblem
from services.console.entrypoints.web import CONSOLE, errors_of, form, render, session, signed_in
from services.console.schemas import api_key_body, environment_body, text
from services.console.usecases.pages import Console, q

AGENT_MANIFEST = "deploy/kubernetes/agent.yaml"


async def _dataplanes(
    request: web.Request,
    *,
    created: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    items = await request.app[CONSOLE].dataplanes(session(request))
    return render(
        request,
        "dataplanes.html",
        {"dataplanes": items, "created": created, "errors": errors or {}, "manifest": AGENT_MANIFEST},
        status=status,
    )


@signed_in
async def dataplanes(request: web.Request) -> web.StreamResponse:
    return await _dataplanes(request)


@signed_in
async def create_dataplane(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    s = session(request)
    try:
        created = await request.app[CONSOLE].act(
            s, "POST", f"{Console.org(s)}/dataplanes", {"name": text(data, "name")}
        )
    except ApiProblem as exc:
        if exc.status not in (403, 409, 422):
            raise
        return await _dataplanes(request, errors=errors_of(exc, ("name",)), status=exc.status)
    return await _dataplanes(request, created=created, status=201)


async def _environments(
    request: web.Request, *, errors: dict[str, str] | None = None, status: int = 200
) -> web.StreamResponse:
    s = session(request)
    console = request.app[CONSOLE]
    environments, planes = await console.environments(s), await console.dataplanes(s)
    return render(
        request,
        "environments.html",
        {"environments": environments, "dataplanes": planes, "errors": errors or {}},
        status=status,
    )


@signed_in
async def environments(request: web.Request) -> web.StreamResponse:
    return await _environments(request)


@signed_in
async def create_environment(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    s = session(request)
    try:
        body = environment_body(data)
        await request.app[CONSOLE].act(s, "POST", f"{Console.org(s)}/environments", body)
    except ApiProblem as exc:
        if exc.status not in (403, 409, 422):
            raise
        fields = ("name", "dataplane_id", "order")
        return await _environments(request, errors=errors_of(exc, fields), status=exc.status)
    raise web.HTTPSeeOther("/environments")


@signed_in
async def audit(request: web.Request) -> web.StreamResponse:
    filters = {k: request.query.get(k, "").strip()[:200] for k in ("action", "actor_id", "cursor")}
    page = await request.app[CONSOLE].audit(session(request), **filters)
    return render(request, "audit.html", {"page": page, "filters": filters})


async def _api_keys(
    request: web.Request,
    *,
    created: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    items = await request.app[CONSOLE].api_keys(session(request))
    return render(
        request,
        "api_keys.html",
        {"keys": items, "roles": ROLES, "created": created, "errors": errors or {}},
        status=status,
    )


@signed_in
async def api_keys(request: web.Request) -> web.StreamResponse:
    return await _api_keys(request)


@signed_in
async def create_api_key(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    s = session(request)
    try:
        created = await request.app[CONSOLE].act(s, "POST", f"{Console.org(s)}/api-keys", api_key_body(data))
    except ApiProblem as exc:
        if exc.status not in (403, 409, 422):
            raise
        fields = ("name", "role", "expires_in_days")
        return await _api_keys(request, errors=errors_of(exc, fields), status=exc.status)
    return await _api_keys(request, created=created, status=201)


@signed_in
async def revoke_api_key(request: web.Request) -> web.StreamResponse:
    await form(request)
    s = session(request)
    kid = request.match_info["id"]
    try:
        await request.app[CONSOLE].act(s, "DELETE", f"{Console.org(s)}/api-keys/{q(kid)}")
    except ApiProblem as exc:
        if exc.status != 403:
            raise
        return await _api_keys(request, errors={"": exc.detail}, status=403)
    raise web.HTTPSeeOther("/api-keys")
