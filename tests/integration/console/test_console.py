"""The console against the real API: sign-in, sessions, CSRF, roles, tenancy, field errors, live.

What a person would notice: the pages they reach, the buttons they see, the words of a refusal,
and that nothing changed when the console refused; checked through the API where it matters.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from libs.devstack.stack import Stack, http
from services.console.app import create_app
from services.console.entrypoints.routes import PAGES, PUBLIC
from tests.integration.console.conftest import Browser, Clock
from tests.support import eventually

pytestmark = pytest.mark.timeout(240)

MUTATING = re.compile(r"<button[^>]*type=\"submit\"[^>]*>(?!\s*(Sign out|Filter)\s*<)")


def registries_of(stack: Stack, org: str = "default", key: str | None = None) -> list[dict[str, Any]]:
    status, answer = http("GET", f"{stack.front_url}/v1/orgs/{org}/registries", token=key or stack.org_key)
    assert status == 200, answer
    items: list[dict[str, Any]] = answer["items"]
    return items


async def test_signing_in_opens_a_session_behind_a_safe_cookie(stack: Stack, browser: Browser) -> None:
    assert stack.org_key
    status, _, location = await browser.sign_in(stack.org_key)
    assert (status, location) == (303, "/components")
    cookie = next(c for c in browser.client.cookie_jar if c.key == "landfall_session")
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert stack.org_key not in cookie.value
    page = await browser.page("/components")
    assert "hello" in page
    assert "local-owner · owner · org default" in page

    status, _, location = await browser.post("/sign-out", {})
    assert (status, location) == (303, "/sign-in")
    await browser.page("/components", status=303)


async def test_a_wrong_key_is_refused_and_opens_no_session(stack: Stack, browser: Browser) -> None:
    status, body, _ = await browser.sign_in("lfk_" + "A" * 49)
    assert status == 401
    assert "not an org API key" in body or "refused" in body
    assert not [c for c in browser.client.cookie_jar if c.key == "landfall_session"]
    await browser.page("/registries", status=303)


async def test_every_page_but_signing_in_needs_a_session(browser: Browser) -> None:
    """The route table guards every page it does not list as public (routes.PUBLIC)."""
    for page in PAGES:
        if page.handler in PUBLIC:
            continue
        path = page.path.format(project="default", component="web", environment="dev", id="x")
        if page.method == "POST":
            status, _, _ = await browser.post(path, {})
            assert status == 401, path
        else:
            await browser.page(path, status=401 if path.endswith("/events") else 303)


async def test_the_secure_flag_follows_https_at_the_proxy(stack: Stack, browser: Browser) -> None:
    assert stack.org_key
    await browser.page("/sign-in")
    async with browser.client.post(
        "/sign-in",
        data={"api_key": stack.org_key, "org": "default", "csrf": browser.csrf},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert "Secure" in r.headers.getall("Set-Cookie")[0]


async def test_a_form_without_its_csrf_token_changes_nothing(stack: Stack, admin: Browser) -> None:
    await admin.page("/registries/new")
    before = registries_of(stack)
    form = {
        "display_name": "csrf probe",
        "auth.type": "anonymous",
        "auth.host": "registry.hub.docker.com",
    }
    status, body, _ = await admin.post("/registries", form, csrf=False)
    assert status == 403
    assert "CSRF" in body
    status, _, _ = await admin.post("/registries", {**form, "csrf": "forged"}, csrf=False)
    assert status == 403
    assert registries_of(stack) == before


async def test_a_session_ends_after_its_idle_time(admin: Browser, clock: Clock) -> None:
    await admin.page("/components")
    clock.now += 599
    await admin.page("/components")  # used: its idle timer starts again
    clock.now += 600
    async with admin.client.get("/components", allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"].startswith("/sign-in")
    status, _, _ = await admin.post("/registries", {"display_name": "late"})
    assert status == 401


async def test_a_viewer_sees_no_buttons_that_change_anything_and_the_api_refuses(
    stack: Stack, browser: Browser
) -> None:
    viewer = stack.new_key("default", "viewer")
    await browser.sign_in(viewer["key"])
    for path in (
        "/components",
        "/registries",
        "/projects/default/components/hello",
        "/projects/default/components/hello/ci",
        "/dataplanes",
        "/environments",
        "/api-keys",
    ):
        page = await browser.page(path)
        assert not MUTATING.search(page), (path, MUTATING.search(page))
    assert "+ Add Registry" not in await browser.page("/registries")
    before = registries_of(stack)
    status, body, _ = await browser.post(
        "/registries",
        {"display_name": "viewer's", "auth.type": "anonymous", "auth.host": "registry.hub.docker.com"},
    )
    assert status == 403
    assert "owner" in body
    assert registries_of(stack) == before


async def test_another_orgs_objects_answer_404(stack: Stack, admin: Browser) -> None:
    other = stack.new_org("console-other")
    status, reg = http(
        "POST",
        f"{stack.front_url}/v1/orgs/console-other/registries",
        token=other["key"],
        body={"display_name": "theirs", "auth": {"type": "anonymous", "host": "registry.hub.docker.com"}},
    )
    assert status == 201, reg
    await admin.page("/registries")
    status, body, _ = await admin.post(f"/registries/{reg['id']}/test", {})
    assert status == 404
    assert "Not found" in body
    status, _, _ = await admin.post(f"/registries/{reg['id']}/delete", {})
    assert status == 404
    assert [r["id"] for r in registries_of(stack, "console-other", other["key"])] == [reg["id"]]
    await admin.page("/projects/default/components/not-there", status=404)
    assert "Not found" in await admin.page("/projects/default/components/NOT_A_NAME", status=404)


async def test_refusals_are_shown_beside_the_fields_they_name(admin: Browser) -> None:
    await admin.page("/registries/new")
    status, body, _ = await admin.post(
        "/registries",
        {"display_name": "bad host", "auth.type": "basic", "auth.host": "https://", "auth.username": "u"},
    )
    assert status == 422
    # the error sits in the field's own block, announced to screen readers, the value kept
    assert re.search(r'id="e-auth\.(host|password)" role="alert">[^<]+<', body), body
    assert 'value="bad host"' in body


async def test_a_registry_in_use_is_not_deleted_and_the_page_says_why(stack: Stack, admin: Browser) -> None:
    demo = stack.state["provisioned"]["registry_id"]
    await admin.page("/registries")
    status, body, _ = await admin.post(f"/registries/{demo}/delete", {})
    assert status == 409
    assert "Not deleted" in body
    assert "hello" in body
    assert demo in [r["id"] for r in registries_of(stack)]


async def test_the_component_page_hears_a_deployment_land_without_a_reload(admin: Browser) -> None:
    await admin.page("/projects/default/components/hello")
    async with admin.client.get("/projects/default/components/hello/events") as events:
        assert events.headers["Content-Type"].startswith("text/event-stream")
        first = await _event(events, "pipeline")
        assert "development" in first
        status, _, _ = await admin.post(
            "/projects/default/components/hello/deploy", {"environment": "development", "tag": "1.1"}
        )
        assert status == 303
        seen = ""
        while "demo/hello:1.1" not in seen or "s-succeeded" not in seen.split("Latest:", 1)[-1]:
            seen = await asyncio.wait_for(_event(events, "pipeline"), timeout=60)
        assert "succeeded" in seen


async def test_a_failed_deployment_shows_its_reason_live(admin: Browser) -> None:
    await admin.page("/projects/default/components/hello")
    async with admin.client.get("/projects/default/components/hello/events") as events:
        await _event(events, "pipeline")
        status, _, _ = await admin.post(
            "/projects/default/components/hello/deploy", {"environment": "staging", "tag": "no-such-tag"}
        )
        assert status == 303
        seen = ""
        while "image_not_found" not in seen:
            seen = await asyncio.wait_for(_event(events, "history"), timeout=60)
    assert "s-failed" in seen


async def test_manual_task_executions_run_with_their_arguments(stack: Stack, admin: Browser) -> None:
    demo = stack.state["provisioned"]["registry_id"]
    await admin.page("/components/new")
    status, body, location = await admin.post(
        "/components",
        {
            "project": "default",
            "name": "migrate",
            "type": "manual-task",
            "registry_id": demo,
            "image": f"{stack.registry.host}/demo/hello:1.0",
        },
    )
    assert status == 303, body
    page = await admin.page(location)
    assert "Executions" in page
    status, body, _ = await admin.post(location + "/executions", {"environment": "development"})
    assert status == 409
    assert "deploy it first" in body  # the API's own words, on the page
    status, _, _ = await admin.post(location + "/deploy", {"environment": "development"})
    assert status == 303

    async def running() -> bool:
        page = await admin.page(location)
        return "succeeded" in page.split('id="stage-development"', 1)[1].split("</li>", 1)[0]

    await eventually(running, timeout=60, what="the task's template in development")
    status, body, _ = await admin.post(
        location + "/executions", {"environment": "development", "args": "db migrate\n--to 42"}
    )
    assert status == 303, body
    page = await admin.page(location)
    assert "db migrate --to 42" in page


async def test_the_configuration_panel_saves_and_never_shows_a_secret(stack: Stack, admin: Browser) -> None:
    page = await admin.page("/projects/default/components/hello")
    assert "/environments/production/config" in page
    where = "/projects/default/components/hello/environments/production/config"
    await admin.page(where)
    secret = "s3cret-" + "x" * 12
    status, body, _ = await admin.post(
        where,
        {
            "replicas": "2",
            "resources.requests.cpu": "250m",
            "env": "LOG_LEVEL=debug",
            "secrets": f"DB_PASSWORD={secret}",
        },
    )
    assert status == 303, body
    status, config = http("GET", f"{stack.front_url}/v1/orgs/default{where}", token=stack.org_key)
    assert status == 200
    assert config["replicas"] == 2
    assert config["env"] == {"LOG_LEVEL": "debug"}
    assert config["secret_names"] == ["DB_PASSWORD"]
    page = await admin.page(where)
    assert "DB_PASSWORD" in page
    assert secret not in page
    assert secret not in await admin.page("/projects/default/components/hello")

    status, body, _ = await admin.post(where, {"replicas": "many"})
    assert status == 422
    assert 'id="e-replicas"' in body

    status, body, _ = await admin.post(where, {"replicas": "2", "delete_secret": "DB_PASSWORD"})
    assert status == 303, body
    _, config = http("GET", f"{stack.front_url}/v1/orgs/default{where}", token=stack.org_key)
    assert config["secret_names"] == []


async def test_without_a_front_door_it_routes_to_each_service(
    stack: Stack, console_settings: Any, clock: Clock
) -> None:
    """docker-compose's shape: no LANDFALL_URL, the three services' own addresses."""
    import aiohttp
    from aiohttp.test_utils import TestServer

    from services.console.app import create_app

    settings = console_settings.model_copy(
        update={
            "url": "http://127.0.0.1:9",  # nothing listens there
            "credentials_url": stack.url("credentials"),
            "gateway_url": stack.url("webhook_gateway"),
            "orchestrator_url": stack.url("orchestrator"),
        }
    )
    server = TestServer(create_app(settings, clock=clock))
    await server.start_server()
    try:
        base = str(server.make_url("/")).rstrip("/")
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as client:
            browser = Browser(client)
            assert stack.org_key
            status, _, _ = await browser.sign_in(stack.org_key)
            assert status == 303
            assert "local registry" in await browser.page("/registries")
            assert "make-up" in await browser.page("/projects/default/components/hello/ci")
            assert "development" in await browser.page("/projects/default/components/hello")
    finally:
        await server.close()


async def _event(response: Any, name: str) -> str:
    """The data of the next event called `name` on a text/event-stream."""
    kind = ""
    data: list[str] = []
    while True:
        line = (await response.content.readline()).decode().rstrip("\n")
        if line.startswith("event: "):
            kind, data = line[7:], []
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and kind:
            if kind == name:
                return "\n".join(data)
            kind = ""


async def test_health_readiness_metrics_and_openapi(browser: Browser) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        async with browser.client.get(path) as r:
            assert r.status == 200, path
    async with browser.client.get("/openapi.json") as r:
        doc = await r.json()
    assert "/sign-in" in doc["paths"]
    assert "/projects/{project}/components/{component}/events" in doc["paths"]


async def test_a_key_guesser_is_stopped_at_the_sign_in_page_and_other_browsers_still_sign_in(
    stack: Stack, console_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused sign-ins are counted per browser address in the console (here behind one trusted
    proxy that names the browser), and answered 429 with Retry-After before the API is asked."""
    monkeypatch.setenv("LANDFALL_PREAUTH_REFUSAL_BURST", "3")
    monkeypatch.setenv("LANDFALL_TRUSTED_PROXY_HOPS", "1")
    srv = TestServer(create_app(console_settings))
    await srv.start_server()
    try:
        base = str(srv.make_url("/")).rstrip("/")

        async def browser_at(address: str) -> tuple[aiohttp.ClientSession, Browser]:
            client = aiohttp.ClientSession(
                base_url=base,
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                headers={"X-Forwarded-For": address},
            )
            return client, Browser(client)

        guesser_client, guesser = await browser_at("203.0.113.7")
        other_client, other = await browser_at("203.0.113.8")
        async with guesser_client, other_client:
            for _ in range(3):
                status, _, _ = await guesser.sign_in("lfk_" + "B" * 49)
                assert status == 401
            assert stack.org_key
            status, body, _ = await guesser.sign_in(stack.org_key)  # even a good key waits now
            assert status == 429, body[:300]
            assert "Too many refused sign-ins" in body
            async with guesser_client.get("/sign-in") as page:
                assert page.status == 200  # the form itself still shows
            status, _, location = await other.sign_in(stack.org_key)
            assert (status, location) == (303, "/components")
    finally:
        await srv.close()
