"""The org's pages: data planes (enrollment shown once), environments, the audit trail, API keys."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from libs.contracts.identity import ROLES
from services.console.entrypoints.web import (
    CONSOLE,
    FormData,
    Handler,
    Page,
    form,
    form_page,
    render,
    session,
    shown_again,
)
from services.console.schemas import api_key_body, environment_body, text
from services.console.usecases.pages import Console, q

AGENT_MANIFEST = "deploy/kubernetes/agent.yaml"


def _shown_once(
    page: Page, path: str, body: Callable[[FormData], dict[str, Any]], fields: tuple[str, ...]
) -> Handler:
    """POST the form's `body` to the org's `path`; the answer is `page` with what was created on it,
    shown this once (an enrollment token, a new key), or the form again with the API's refusal."""

    async def create(request: web.Request) -> web.StreamResponse:
        data = await form(request)
        s = session(request)
        async with shown_again(partial(page, request), fields=fields):
            created = await request.app[CONSOLE].act(s, "POST", f"{Console.org(s)}{path}", body(data))
        return await page(request, created=created, status=201)

    return create


async def _dataplanes_context(request: web.Request) -> dict[str, Any]:
    items = await request.app[CONSOLE].dataplanes(session(request))
    return {"dataplanes": items, "created": None, "manifest": AGENT_MANIFEST}


dataplanes = form_page("dataplanes.html", _dataplanes_context)
create_dataplane = _shown_once(
    dataplanes, "/dataplanes", lambda data: {"name": text(data, "name")}, ("name",)
)


async def _environments_context(request: web.Request) -> dict[str, Any]:
    s = session(request)
    console = request.app[CONSOLE]
    return {"environments": await console.environments(s), "dataplanes": await console.dataplanes(s)}


environments = form_page("environments.html", _environments_context)


async def create_environment(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    s = session(request)
    async with shown_again(partial(environments, request), fields=("name", "dataplane_id", "order")):
        body = environment_body(data)
        await request.app[CONSOLE].act(s, "POST", f"{Console.org(s)}/environments", body)
    raise web.HTTPSeeOther("/environments")


async def audit(request: web.Request) -> web.StreamResponse:
    filters = {k: request.query.get(k, "").strip()[:200] for k in ("action", "actor_id", "cursor")}
    page = await request.app[CONSOLE].audit(session(request), **filters)
    return render(request, "audit.html", {"page": page, "filters": filters})


async def _api_keys_context(request: web.Request) -> dict[str, Any]:
    items = await request.app[CONSOLE].api_keys(session(request))
    return {"keys": items, "roles": ROLES, "created": None}


api_keys = form_page("api_keys.html", _api_keys_context)
create_api_key = _shown_once(api_keys, "/api-keys", api_key_body, ("name", "role", "expires_in_days"))


async def revoke_api_key(request: web.Request) -> web.StreamResponse:
    await form(request)
    s = session(request)
    kid = request.match_info["id"]
    async with shown_again(partial(api_keys, request), fields=None, refused=(403,)):
        await request.app[CONSOLE].act(s, "DELETE", f"{Console.org(s)}/api-keys/{q(kid)}")
    raise web.HTTPSeeOther("/api-keys")
