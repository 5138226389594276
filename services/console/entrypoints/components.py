"""Components: the list, create, the component page (pipeline, deploy, promote, history, redeploy,
executions) and its External CI page (tokens, webhook, snippets, signing secret).

A change answers with a redirect to the page it changed (so a reload never posts twice), except
where the answer holds something shown once (a new CI token, a signing secret): that page is
rendered in the answer itself, and a reload shows the list without it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from libs.runtime.http import path_name
from services.console.domain import COMPONENT_TYPES
from services.console.entrypoints.web import CONSOLE, form, form_page, render, session, shown_again
from services.console.schemas import (
    COMPONENT_FIELDS,
    component_body,
    deploy_body,
    execution_body,
    form_values,
    text,
    token_body,
)
from services.console.usecases.pages import Console, q


def names(request: web.Request) -> tuple[str, str]:
    return path_name(request, "project"), path_name(request, "component")


def page_url(project: str, component: str, suffix: str = "") -> str:
    return f"/projects/{q(project)}/components/{q(component)}{suffix}"


async def components(request: web.Request) -> web.StreamResponse:
    items = await request.app[CONSOLE].components(session(request))
    return render(request, "components.html", {"components": items, "types": COMPONENT_TYPES})


async def _new_context(request: web.Request) -> dict[str, Any]:
    s = session(request)
    console = request.app[CONSOLE]
    registries, projects = await console.registries(s), await console.projects(s) or ["default"]
    values = {"type": "service", "timezone": "UTC"}
    return {"types": COMPONENT_TYPES, "registries": registries, "projects": projects, "values": values}


new_component = form_page("component_new.html", _new_context)


async def create_component(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    values = form_values(data)
    s = session(request)
    project = text(data, "project") or "default"
    async with shown_again(partial(new_component, request, values=values), fields=COMPONENT_FIELDS):
        body = component_body(data)
        await request.app[CONSOLE].act(s, "POST", f"{Console.org(s)}/projects/{q(project)}/components", body)
    raise web.HTTPSeeOther(page_url(project, body["name"]))


async def _page_context(request: web.Request) -> dict[str, Any]:
    project, name = names(request)
    view = await request.app[CONSOLE].component(session(request), project, name)
    return {**view, "project": project, "name": name, "types": COMPONENT_TYPES}


component = form_page("component.html", _page_context)


async def _change(request: web.Request, suffix: str, body: dict[str, Any]) -> web.StreamResponse:
    """POST to the component's API `suffix`; back to its page, or the page with the API's refusal."""
    project, name = names(request)
    s = session(request)
    console = request.app[CONSOLE]
    async with shown_again(partial(component, request)):
        await console.act(s, "POST", console.component_path(s, project, name) + suffix, body)
    raise web.HTTPSeeOther(page_url(project, name))


async def deploy(request: web.Request) -> web.StreamResponse:
    return await _change(request, "/deployments", deploy_body(await form(request)))


async def promote(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    return await _change(request, "/promotions", {"from": text(data, "from"), "to": text(data, "to")})


async def redeploy(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    body = {"environment": text(data, "environment"), "image": text(data, "image")}
    return await _change(request, "/deployments", body)


async def execute(request: web.Request) -> web.StreamResponse:
    return await _change(request, "/executions", execution_body(await form(request)))


# --- External CI -------------------------------------------------------------------------------------


async def _ci_context(request: web.Request) -> dict[str, Any]:
    project, name = names(request)
    view = await request.app[CONSOLE].ci(session(request), project, name)
    webhook = str(view["snippets"].get("gateway_url", "")).rstrip("/") + "/v1/webhooks/deploy"
    shown_once = {"created": None, "secret": None}
    return {**view, **shown_once, "project": project, "name": name, "webhook_url": webhook}


ci = form_page("ci.html", _ci_context)


async def _ci_change(request: web.Request, method: str, suffix: str, body: dict[str, Any] | None) -> Any:
    project, name = names(request)
    s = session(request)
    console = request.app[CONSOLE]
    return await console.act(s, method, console.component_path(s, project, name) + suffix, body)


async def generate_token(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    async with shown_again(partial(ci, request), fields=("name", "expires_in_days")):
        created = await _ci_change(request, "POST", "/tokens", token_body(data))
    return await ci(request, created=created, status=201)


async def revoke_token(request: web.Request) -> web.StreamResponse:
    await form(request)
    tid = request.match_info["id"]
    async with shown_again(partial(ci, request), fields=None, refused=(403,)):
        await _ci_change(request, "DELETE", f"/tokens/{q(tid)}", None)
    project, name = names(request)
    raise web.HTTPSeeOther(page_url(project, name, "/ci"))


async def signing_secret(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    method = "DELETE" if text(data, "action") == "remove" else "POST"
    async with shown_again(partial(ci, request), fields=None, refused=(403, 409)):
        answer = await _ci_change(request, method, "/signing-secret", None)
    if method == "POST":
        return await ci(request, secret=answer, status=201)
    project, name = names(request)
    raise web.HTTPSeeOther(page_url(project, name, "/ci"))
