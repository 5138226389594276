"""Components: the list, create, the component page (pipeline, deploy, promote, history, redeploy,
executions) and its External CI page (tokens, webhook, snippets, signing secret).

A change answers with a redirect to the page it changed (so a reload never posts twice), except
where the answer holds something shown once (a new CI token, a signing secret): that page is
rendered in the answer itself, and a reload shows the list without it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from libs.runtime.http import path_name
from services.console.clients.landfall import ApiProblem
from services.console.domain import COMPONENT_TYPES
from services.console.entrypoints.web import CONSOLE, errors_of, form, render, session, signed_in
from services.console.schemas import (
    COMPONENT_FIELDS,
    component_body,
    deploy_body,
    execution_body,
    text,
    token_body,
)
from services.console.usecases.pages import Console, q


def names(request: web.Request) -> tuple[str, str]:
    return path_name(request, "project"), path_name(request, "component")


def page_url(project: str, component: str, suffix: str = "") -> str:
    return f"/projects/{q(project)}/components/{q(component)}{suffix}"


@signed_in
async def components(request: web.Request) -> web.StreamResponse:
    items = await request.app[CONSOLE].components(session(request))
    return render(request, "components.html", {"components": items, "types": COMPONENT_TYPES})


async def _new(
    request: web.Request,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    s = session(request)
    console = request.app[CONSOLE]
    registries, projects = await console.registries(s), await console.projects(s)
    return render(
        request,
        "component_new.html",
        {
            "types": COMPONENT_TYPES,
            "registries": registries,
            "projects": projects or ["default"],
            "values": values or {"type": "service", "timezone": "UTC"},
            "errors": errors or {},
        },
        status=status,
    )


@signed_in
async def new_component(request: web.Request) -> web.StreamResponse:
    return await _new(request)


@signed_in
async def create_component(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    values = {k: v for k, v in data.items() if isinstance(v, str) and k != "csrf"}
    s = session(request)
    project = text(data, "project") or "default"
    try:
        body = component_body(data)
        await request.app[CONSOLE].act(s, "POST", f"{Console.org(s)}/projects/{q(project)}/components", body)
    except ApiProblem as exc:
        if exc.status not in (403, 409, 422):
            raise
        return await _new(request, values=values, errors=errors_of(exc, COMPONENT_FIELDS), status=exc.status)
    raise web.HTTPSeeOther(page_url(project, body["name"]))


async def _page(
    request: web.Request, *, errors: dict[str, str] | None = None, status: int = 200
) -> web.StreamResponse:
    project, name = names(request)
    view = await request.app[CONSOLE].component(session(request), project, name)
    return render(
        request,
        "component.html",
        {**view, "project": project, "name": name, "errors": errors or {}, "types": COMPONENT_TYPES},
        status=status,
    )


@signed_in
async def component(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def _change(request: web.Request, suffix: str, body: dict[str, Any]) -> web.StreamResponse:
    """POST to the component's API `suffix`; back to its page, or the page with the API's refusal."""
    project, name = names(request)
    s = session(request)
    console = request.app[CONSOLE]
    try:
        await console.act(s, "POST", console.component_path(s, project, name) + suffix, body)
    except ApiProblem as exc:
        if exc.status not in (403, 409, 422):
            raise
        return await _page(request, errors={"": exc.detail, **errors_of(exc, ())}, status=exc.status)
    raise web.HTTPSeeOther(page_url(project, name))


@signed_in
async def deploy(request: web.Request) -> web.StreamResponse:
    return await _change(request, "/deployments", deploy_body(await form(request)))


@signed_in
async def promote(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    return await _change(request, "/promotions", {"from": text(data, "from"), "to": text(data, "to")})


@signed_in
async def redeploy(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    body = {"environment": text(data, "environment"), "image": text(data, "image")}
    return await _change(request, "/deployments", body)


@signed_in
async def execute(request: web.Request) -> web.StreamResponse:
    return await _change(request, "/executions", execution_body(await form(request)))


# --- External CI -------------------------------------------------------------------------------------


async def _ci(
    request: web.Request,
    *,
    created: dict[str, Any] | None = None,
    secret: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    project, name = names(request)
    view = await request.app[CONSOLE].ci(session(request), project, name)
    snippets = view["snippets"]
    return render(
        request,
        "ci.html",
        {
            **view,
            "project": project,
            "name": name,
            "webhook_url": str(snippets.get("gateway_url", "")).rstrip("/") + "/v1/webhooks/deploy",
            "created": created,
            "secret": secret,
            "errors": errors or {},
        },
        status=status,
    )


@signed_in
async def ci(request: web.Request) -> web.StreamResponse:
    return await _ci(request)


async def _ci_change(request: web.Request, method: str, suffix: str, body: dict[str, Any] | None) -> Any:
    project, name = names(request)
    s = session(request)
    console = request.app[CONSOLE]
    return await console.act(s, method, console.component_path(s, project, name) + suffix, body)


@signed_in
async def generate_token(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    try:
        created = await _ci_change(request, "POST", "/tokens", token_body(data))
    except ApiProblem as exc:
        if exc.status not in (403, 409, 422):
            raise
        return await _ci(request, errors=errors_of(exc, ("name", "expires_in_days")), status=exc.status)
    return await _ci(request, created=created, status=201)


@signed_in
async def revoke_token(request: web.Request) -> web.StreamResponse:
    await form(request)
    tid = request.match_info["id"]
    try:
        await _ci_change(request, "DELETE", f"/tokens/{q(tid)}", None)
    except ApiProblem as exc:
        if exc.status != 403:
            raise
        return await _ci(request, errors={"": exc.detail}, status=403)
    project, name = names(request)
    raise web.HTTPSeeOther(page_url(project, name, "/ci"))


@signed_in
async def signing_secret(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    method = "DELETE" if text(data, "action") == "remove" else "POST"
    try:
        answer = await _ci_change(request, method, "/signing-secret", None)
    except ApiProblem as exc:
        if exc.status not in (403, 409):
            raise
        return await _ci(request, errors={"": exc.detail}, status=exc.status)
    if method == "POST":
        return await _ci(request, secret=answer, status=201)
    project, name = names(request)
    raise web.HTTPSeeOther(page_url(project, name, "/ci"))
