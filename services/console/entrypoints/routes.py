"""The console's route table: every page and form action, and who may use it.

Pages answer HTML to a signed-in session: every route but the `PUBLIC` ones is wrapped in
`signed_in` here, so a new page is guarded unless it says otherwise; without a session, GETs go
to the sign-in page and POSTs answer 401. In `/openapi.json` they are `x-landfall-auth: none`
because the console's guard is the session, not a bearer credential: the summary says the least
role, and the API decides every change anyway (a viewer's POST reaches the API and is refused
there with 403).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from libs.runtime.http import Api, Handler
from services.console.entrypoints import auth, components, configs, live, org, registries
from services.console.entrypoints.web import signed_in

STATIC = Path(__file__).resolve().parent.parent / "static"
COMPONENT = "/projects/{project}/components/{component}"


@dataclass(frozen=True, slots=True)
class Page:
    method: str
    path: str
    handler: Handler
    summary: str


async def home(_: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/components")


PAGES: list[Page] = [
    Page("GET", "/", home, "to the components page"),
    Page("GET", "/sign-in", auth.sign_in_page, "the sign-in form (anyone)"),
    Page("POST", "/sign-in", auth.sign_in, "sign in with an org API key (anyone; the API checks the key)"),
    Page("POST", "/sign-out", auth.sign_out, "end the session (session)"),
    Page("GET", "/registries", registries.registries, "Container Registries (session: viewer)"),
    Page("GET", "/registries/new", registries.new_registry, "+ Add Registry (session: owner)"),
    Page("POST", "/registries", registries.add_registry, "save a registry (session: owner)"),
    Page("POST", "/registries/{id}/test", registries.test_registry, "Test connection (session: owner)"),
    Page("POST", "/registries/{id}/delete", registries.delete_registry, "delete a registry (session: owner)"),
    Page("GET", "/components", components.components, "Components (session: viewer)"),
    Page("GET", "/components/new", components.new_component, "create a component (session: developer)"),
    Page("POST", "/components", components.create_component, "create a component (session: developer)"),
    Page("GET", COMPONENT, components.component, "a component's pipeline and history (session: viewer)"),
    Page("GET", COMPONENT + "/events", live.events, "live updates, server-sent events (session: viewer)"),
    Page("POST", COMPONENT + "/deploy", components.deploy, "Deploy (session: developer)"),
    Page("POST", COMPONENT + "/promote", components.promote, "Promote (session: developer)"),
    Page("POST", COMPONENT + "/redeploy", components.redeploy, "Redeploy (session: developer)"),
    Page("POST", COMPONENT + "/executions", components.execute, "run a manual task (session: developer)"),
    Page(
        "GET",
        COMPONENT + "/environments/{environment}/config",
        configs.config,
        "an environment's configuration (session: viewer)",
    ),
    Page(
        "POST",
        COMPONENT + "/environments/{environment}/config",
        configs.save_config,
        "save an environment's configuration (session: developer)",
    ),
    Page("GET", COMPONENT + "/ci", components.ci, "External CI (session: viewer)"),
    Page("POST", COMPONENT + "/ci/tokens", components.generate_token, "Generate Token (session: developer)"),
    Page(
        "POST", COMPONENT + "/ci/tokens/{id}/revoke", components.revoke_token, "Revoke (session: developer)"
    ),
    Page(
        "POST",
        COMPONENT + "/ci/signing-secret",
        components.signing_secret,
        "make or remove the signing secret (session: developer)",
    ),
    Page("GET", "/dataplanes", org.dataplanes, "Data planes (session: viewer)"),
    Page("POST", "/dataplanes", org.create_dataplane, "create a data plane (session: owner)"),
    Page("GET", "/environments", org.environments, "Environments (session: viewer)"),
    Page("POST", "/environments", org.create_environment, "add an environment (session: owner)"),
    Page("GET", "/audit", org.audit, "Audit (session: viewer)"),
    Page("GET", "/api-keys", org.api_keys, "API keys (session: viewer)"),
    Page("POST", "/api-keys", org.create_api_key, "create an API key (session: owner)"),
    Page("POST", "/api-keys/{id}/revoke", org.revoke_api_key, "revoke an API key (session: owner)"),
]

# The pages that need no session: signing in, and `/` (it redirects to a page that does).
PUBLIC: set[Handler] = {home, auth.sign_in_page, auth.sign_in}


def register(api: Api) -> None:
    for page in PAGES:
        handler = page.handler if page.handler in PUBLIC else signed_in(page.handler)
        api.route(page.method, page.path, handler, summary=page.summary, auth="none")
    api.app.router.add_static("/static/", STATIC, name="static", append_version=True)
