"""Fixtures of the console's integration tests: the real API behind it, and a console in this process.

The console is a backend-for-frontend, so the "real server" it depends on is the whole public API:
one stack per module (nats-server, PostgreSQL, OpenBao, docker-registry, the sandbox Kubernetes API,
credentials, orchestrator, gateway, front door, an agent), provisioned as `make up` does. The console
under test runs here, from `create_app`, with the sessions' clock in the test's hands (`clock`), so
expiry is tested by moving time, not by waiting for it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from libs.contracts.subjects import Subjects
from libs.devstack.stack import Stack
from libs.runtime.natsauth import service_permissions
from services.console.app import create_app
from services.console.settings import Settings
from tests.e2e.conftest import running_stack

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("console-stack"), demo=True) as s:
        yield s


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def console_settings(stack: Stack) -> Settings:
    creds: Path = stack.nats_auth.creds_file(
        "console", service_permissions(Subjects(stack.bus_prefix), "console")
    )
    return Settings(
        url=stack.front_url,
        nats_url=stack.nats.url,
        nats_creds_file=creds,
        bus_prefix=stack.bus_prefix,
        session_idle_seconds=600,
        session_ttl_seconds=3600,
    )


@pytest.fixture(scope="module")
async def server(console_settings: Settings, clock: Clock) -> AsyncIterator[TestServer]:
    srv = TestServer(create_app(console_settings, clock=clock))
    await srv.start_server()
    try:
        yield srv
    finally:
        await srv.close()


class Browser:
    """A person's browser as far as the console can tell: a cookie jar, forms with their token."""

    def __init__(self, client: aiohttp.ClientSession) -> None:
        self.client = client
        self.csrf = ""

    async def page(self, path: str, *, status: int = 200) -> str:
        async with self.client.get(path, allow_redirects=False) as r:
            text = await r.text()
            assert r.status == status, (path, r.status, text[:500])
        found = CSRF.search(text)
        if found:
            self.csrf = found.group(1)
        return text

    async def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True, headers: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """(status, body, Location) of a form post, not following the redirect."""
        form = {**data, **({"csrf": self.csrf} if csrf else {})}
        async with self.client.post(path, data=form, allow_redirects=False, headers=headers) as r:
            return r.status, await r.text(), r.headers.get("Location", "")

    async def sign_in(self, key: str, *, org: str = "default") -> tuple[int, str, str]:
        await self.page("/sign-in")
        return await self.post("/sign-in", {"api_key": key, "org": org, "next": "/components"})


@pytest.fixture
async def browser(server: TestServer) -> AsyncIterator[Browser]:
    base = str(server.make_url("/")).rstrip("/")
    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        yield Browser(client)


@pytest.fixture
async def admin(stack: Stack, browser: Browser) -> Browser:
    """`browser`, signed in with the default org's admin key (the demo's components in view)."""
    assert stack.org_key
    await browser.sign_in(stack.org_key)
    return browser
