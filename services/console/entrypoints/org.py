"""The org's pages: data planes (enrollment shown once), environments, the audit trail, API keys."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from libs.contracts.identity import ROLES
from services.console.entrypoints.web import CONSOLE, form, form_page, render, session, shown_again, signed_in
from services.console.schemas import api_key_body, environment_body, text
from services.console.usecases.pages import Console, q

AGENT_MANIFEST = "deploy/kubernetes/agent.yaml"


async def _dataplanes_context(request: web.Request) -> dict[str, Any]:
    items = await request.app[CONSOLE].dataplanes(session(request))
    return {"dataplanes": items, "created": None, "manifest": AGENT_MANIFEST}


_dataplanes = form_page("dataplanes.html", _dataplanes_context)
dataplanes = signed_in(_dataplanes)


@signed_in
async def create_dataplane(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    s = session(request)
    async with shown_again(partial(_dataplanes, request), fields=("name",)):
        created = await request.app[CONSOLE].act(
            s, "POST", f"{Console.org(s)}/dataplanes", {"name": text(data, "name")}
        )
    return await _dataplanes(request, created=created, status=201)


async def _environments_context(request: web.Request) -> dict[str, Any]:
    s = session(request)
    console = request.app[CONSOLE]
    return {"environments": await console.environments(s), "dataplanes": await console.dataplanes(s)}


_environments = form_page("environments.html", _environments_context)
environments = signed_in(_environments)


@signed_in
async def create_environment(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    s = session(request)
    async with shown_again(partial(_environments, request), fields=("name", "dataplane_id", "order")):
        body = environment_body(data)
        await request.app[CONSOLE].act(s, "POST", f"{Console.org(s)}/environments", body)
    raise web.HTTPSeeOther("/environments")


@signed_in
async def audit(request: web.Request) -> web.StreamResponse:
    filters = {k: request.query.get(k, "").strip()[:200] for k in ("action", "actor_id", "cursor")}
    page = await request.app[CONSOLE].audit(session(request), **filters)
    return render(request, "audit.html", {"page": page, "filters": filters})


async def _api_keys_context(request: web.Request) -> dict[str, Any]:
    items = await request.app[CONSOLE].api_keys(session(request))
    return {"keys": items, "roles": ROLES, "created": None}


_api_keys = form_page("api_keys.html", _api_keys_context)
api_keys = signed_in(_api_keys)


@signed_in
async def create_api_key(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    s = session(request)
    async with shown_again(partial(_api_keys, request), fields=("name", "role", "expires_in_days")):
        created = await request.app[CONSOLE].act(s, "POST", f"{Console.org(s)}/api-keys", api_key_body(data))
    return await _api_keys(request, created=created, status=201)


@signed_in
async def revoke_api_key(request: web.Request) -> web.StreamResponse:
    await form(request)
    s = session(request)
    kid = request.match_info["id"]
    async with shown_again(partial(_api_keys, request), fields=None, refused=(403,)):
        await request.app[CONSOLE].act(s, "DELETE", f"{Console.org(s)}/api-keys/{q(kid)}")
    raise web.HTTPSeeOther("/api-keys")
