"""The per-environment configuration of a component: replicas, resources, env, secrets (write-only),
autoscaling, the ingress host, auto rollback (API.md "Per-environment configuration").

Saving answers with the component page when the change rolls out (the API says so with a
`deployment_id`), so the person sees that rollout arrive live; otherwise back to the form.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from libs.runtime.http import path_name
from services.console.entrypoints.components import names, page_url
from services.console.entrypoints.web import CONSOLE, form, form_page, session, shown_again
from services.console.schemas import CONFIG_FIELDS, config_body, config_values, form_values
from services.console.usecases.pages import q


async def _page_context(request: web.Request) -> dict[str, Any]:
    project, name = names(request)
    environment = path_name(request, "environment")
    view = await request.app[CONSOLE].config(session(request), project, name, environment)
    here = {"project": project, "name": name, "environment": environment}
    return {**view, **here, "values": config_values(view["config"]), "saved": False}


_page = form_page("config.html", _page_context)


async def config(request: web.Request) -> web.StreamResponse:
    return await _page(request, saved=request.query.get("saved") == "1")


async def save_config(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    project, name = names(request)
    environment = path_name(request, "environment")
    s = session(request)
    console = request.app[CONSOLE]
    values = form_values(data, hide=("secrets",))
    async with shown_again(partial(_page, request, values=values), fields=CONFIG_FIELDS):
        view = await console.config(s, project, name, environment)
        body = config_body(data, view["config"], component_type=str(view["component"].get("type", "")))
        answer: dict[str, Any] = await console.act(
            s, "PUT", console.config_path(s, project, name, environment), body
        )
    if answer.get("deployment_id"):
        raise web.HTTPSeeOther(page_url(project, name))
    raise web.HTTPSeeOther(page_url(project, name, f"/environments/{q(environment)}/config?saved=1"))
