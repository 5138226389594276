"""Infrastructure → Credentials → Container Registries: list, "+ Add Registry", test, delete."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from services.console.clients.landfall import ApiProblem
from services.console.domain import AUTH_TYPES, GUIDANCE, VENDORS
from services.console.entrypoints.web import CONSOLE, form, form_page, render, session, shown_again
from services.console.schemas import REGISTRY_FIELDS, form_values, registry_body
from services.console.usecases.pages import Console, q


async def registries(request: web.Request, *, error: str = "", status: int = 200) -> web.StreamResponse:
    s = session(request)
    items = await request.app[CONSOLE].registries(s)
    return render(
        request,
        "registries.html",
        {"registries": items, "auth_types": AUTH_TYPES, "error": error},
        status=status,
    )


async def _new_context(request: web.Request) -> dict[str, Any]:
    del request  # the same empty form for everyone
    values = {"auth.type": "basic"}
    return {"auth_types": AUTH_TYPES, "vendors": VENDORS, "guidance": GUIDANCE, "values": values}


new_registry = form_page("registry_new.html", _new_context)


async def add_registry(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    values = form_values(data, hide=("auth.password",))
    async with shown_again(
        partial(new_registry, request, values=values), fields=REGISTRY_FIELDS, refused=(409, 422)
    ):
        await request.app[CONSOLE].act(
            session(request), "POST", f"{Console.org(session(request))}/registries", registry_body(data)
        )
    raise web.HTTPSeeOther("/registries")


async def test_registry(request: web.Request) -> web.StreamResponse:
    data = await form(request)
    rid = request.match_info["id"]
    repository = data.get("repository", "")
    body = {"repository": repository.strip()} if isinstance(repository, str) and repository.strip() else {}
    try:
        answer = await request.app[CONSOLE].act(
            session(request), "POST", f"{Console.org(session(request))}/registries/{q(rid)}/test", body
        )
        result = {"ok": bool(answer.get("ok")), "detail": str(answer.get("detail", ""))}
    except ApiProblem as exc:
        if exc.status == 404:
            raise
        result = {"ok": False, "detail": exc.detail}
    if request.headers.get("HX-Request"):
        return render(request, "_test_result.html", {"result": result})
    return render(request, "registry_tested.html", {"result": result, "registry_id": rid})


async def delete_registry(request: web.Request) -> web.StreamResponse:
    await form(request)
    rid = request.match_info["id"]
    try:
        await request.app[CONSOLE].act(
            session(request), "DELETE", f"{Console.org(session(request))}/registries/{q(rid)}"
        )
    except ApiProblem as exc:
        if exc.status != 409:
            raise
        return await registries(request, error=f"Not deleted: {exc.detail}", status=409)
    raise web.HTTPSeeOther("/registries")
