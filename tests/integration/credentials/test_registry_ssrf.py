"""A tenant's registry cannot make the control plane call internal addresses (issue 13).

Everything runs on loopback, in a configuration that lists only the registry
the test registers, by its exact `host:port`. The canary is another loopback
port that counts every TCP connection it accepts (a plain asyncio server: it
counts connections, even ones that never finish a request); after each attempt
it must have seen none, and the answer says "refused by policy". The registry
client is built as `app.py` builds it, against real sockets; the DNS answer
for a made-up name is the one part chosen by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from aiohttp.test_utils import TestServer

from libs.oci.registry.auth import AuthFlow
from libs.oci.registry.client import RegistryClient, close_session, new_session
from libs.oci.registry.egress import EgressPolicy
from services.credentials.domain import Credentials

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REBOUND = "rebind.example"  # a name the test's resolver answers with 127.0.0.1


@dataclass
class Canary:
    port: int
    connections: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    found = Canary(port=0)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        found.connections += 1
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"token": "ok"}')
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    try:
        yield found
    finally:
        server.close()
        await server.wait_closed()


class TestResolver(AbstractResolver):
    """The system's resolver, except that `REBOUND` answers 127.0.0.1."""

    __test__ = False

    def __init__(self) -> None:
        self.system = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host == REBOUND:
            return [
                ResolveResult(
                    hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0, flags=0
                )
            ]
        return await self.system.resolve(host, port, family)

    async def close(self) -> None:
        await self.system.close()


@contextlib.asynccontextmanager
async def registry(routes: Mapping[str, Handler]) -> AsyncIterator[str]:
    """A loopback registry answering `routes` (path -> handler); yields its `host:port`."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def client_for(listed: str) -> AsyncIterator[RegistryClient]:
    """The client as the service builds it, with only `listed` (a host:port) in the private hosts."""
    policy = EgressPolicy.parse([listed])
    session = new_session(timeout=5, policy=policy, resolver=TestResolver())
    try:
        yield RegistryClient(AuthFlow(session, insecure=["127.0.0.1", "localhost", REBOUND], policy=policy))
    finally:
        await close_session(session)


def challenge(realm: str | None = None) -> Handler:
    """401 with a bearer challenge (the realm: `realm`, else this registry's own `/token`); 200 with a
    bearer token, with a digest header for manifests."""

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({}, headers={"Docker-Content-Digest": "sha256:" + "a" * 64})
        where = realm or f"http://{request.host}/token"
        return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{where}",service="reg"'})

    return handler


def token(body: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    return handler


async def test_a_redirect_to_the_canary_is_not_followed(canary: Canary) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{canary.host}/v2/")

    routes = {"/v2/": redirect, "/v2/{repo:.*}/manifests/{ref}": redirect}
    async with registry(routes) as host, client_for(host) as client:
        checked = await client.check(host, None)
        resolved = await client.resolve(host, None, "team/app", "1.0")
    assert canary.connections == 0
    assert checked.ok is False, checked
    assert "refused by policy" in checked.detail, checked
    assert resolved.status == "unreachable", resolved
    assert "refused by policy" in resolved.detail, resolved


@pytest.mark.parametrize("realm_host", ["127.0.0.1", "localhost"])
async def test_a_bearer_realm_on_the_canary_is_refused(canary: Canary, realm_host: str) -> None:
    realm = f"http://{realm_host}:{canary.port}/token"
    async with registry({"/v2/": challenge(realm)}) as host, client_for(host) as client:
        anonymous = await client.check(host, None)
        with_password = await client.check(host, Credentials("u", "p"))
    assert canary.connections == 0
    for result in (anonymous, with_password):
        assert result.ok is False, result
        assert "refused by policy" in result.detail, result


@pytest.mark.parametrize("name", ["localhost", REBOUND, "127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_a_host_that_is_loopback_but_not_listed_is_refused(canary: Canary, name: str) -> None:
    async with registry({}) as listed, client_for(listed) as client:
        target = f"{name}:{canary.port}"
        checked = await client.check(target, None)
        probed = await client.probe(target)
        resolved = await client.resolve(target, None, "team/app", "1.0")
    assert canary.connections == 0
    for detail in (checked.detail, probed.detail, resolved.detail):
        assert "refused by policy" in detail
        assert "127.0.0.1" not in detail.replace(target, "")  # the resolved address is not echoed


async def test_the_listed_registry_is_reached_and_its_token_flow_works() -> None:
    """The control: what is listed works, so the refusals above are the policy's."""
    routes = {"/v2/": challenge(), "/token": token('{"token": "t0k3n", "expires_in": 120}')}
    async with registry(routes) as host, client_for(host) as client:
        checked = await client.check(host, None)
    assert checked.ok is True, checked


@pytest.mark.parametrize("expires_in", ["1" + "0" * 400, "1e400", "Infinity", "NaN", "true"])
async def test_a_huge_or_odd_expires_in_is_survived(expires_in: str) -> None:
    routes = {
        "/v2/": challenge(),
        "/v2/{repo:.*}/manifests/{ref}": challenge(),
        "/token": token(f'{{"token": "t0k3n", "expires_in": {expires_in}}}'),
    }
    async with registry(routes) as host, client_for(host) as client:
        checked = await client.check(host, None)
        resolved = await client.resolve(host, None, "team/app", "1.0")
    assert checked.ok is True, checked
    assert resolved.status == "resolved", resolved


@pytest.mark.parametrize("sent", ["t0k\r\nX-Injected: 1", "t0k\n", "t0k en", "t\u0000k", "t\u00e9k"])
async def test_a_token_that_cannot_be_sent_is_refused(sent: str) -> None:
    routes = {
        "/v2/": challenge(),
        "/v2/{repo:.*}/manifests/{ref}": challenge(),
        "/token": token(json.dumps({"token": sent})),
    }
    async with registry(routes) as host, client_for(host) as client:
        checked = await client.check(host, None)
        resolved = await client.resolve(host, None, "team/app", "1.0")
    assert checked.ok is False, checked
    assert "the registry sent an unusable token" in checked.detail, checked
    assert resolved.status == "unreachable", resolved
    assert "unusable token" in resolved.detail, resolved


async def test_deeply_nested_answers_are_survived() -> None:
    deep = "[" * 100_000 + "]" * 100_000

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text=deep, content_type="application/json")

    routes = {"/v2/": challenge(), "/token": token(deep), "/v2/{repo:.*}/tags/list": missing}
    async with registry(routes) as host, client_for(host) as client:
        checked = await client.check(host, None)
    assert checked.ok is False, checked
    assert "sent no token" in checked.detail, checked
    routes = {"/v2/": missing_ok, "/v2/{repo:.*}/tags/list": missing}
    async with registry(routes) as host, client_for(host) as client:
        tags = await client.check(host, None, "team/app")
    assert tags.ok is False, tags
    assert "unauthorized" in tags.detail, tags


async def missing_ok(request: web.Request) -> web.Response:
    return web.json_response({})


async def test_connection_failures_do_not_echo_os_errors() -> None:
    async with registry({}) as host:
        pass  # the port is closed now, and still listed
    async with client_for(host) as client:
        checked = await client.check(host, None)
    assert checked.detail == f"unreachable: cannot connect to {host}", checked
