"""The shared HTTP behaviour every service gets: problems, admin token, limits, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, Field, SecretStr

from libs.runtime.errors import DependencyUnavailable
from libs.runtime.http import create_base_app, json_response, path_name, query_int, read_json

ADMIN = "admin-token-for-tests"


class Thing(BaseModel):
    name: str = Field(min_length=1, max_length=5)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app, api = create_base_app(
        service="test", version="0", admin_token=SecretStr(ADMIN), client_max_size=1024
    )

    async def create(request: web.Request) -> web.Response:
        org = path_name(request, "org")
        thing = await read_json(request, Thing)
        return json_response({"org": org, "name": thing.name}, status=201)

    async def down(_: web.Request) -> web.Response:
        raise DependencyUnavailable("Vault is sealed")

    api.route(
        "POST", "/v1/orgs/{org}/things", create, summary="create", request=Thing, responses={201: Thing}
    )
    api.route("GET", "/down", down, summary="down", auth="none")
    async with TestClient(TestServer(app)) as c:
        yield c


AUTH = {"Authorization": f"Bearer {ADMIN}"}


async def test_admin_endpoints_need_the_token(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.post("/v1/orgs/acme/things", json={"name": "a"})
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["status"] == 401
    resp = await client.post(
        "/v1/orgs/acme/things", json={"name": "a"}, headers={"Authorization": "Bearer nope"}
    )
    assert resp.status == 401
    resp = await client.post("/v1/orgs/acme/things", json={"name": "a"}, headers=AUTH)
    assert resp.status == 201
    assert await resp.json() == {"org": "acme", "name": "a"}


async def test_bad_bodies_get_the_right_problem(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.post(
        "/v1/orgs/acme/things", data=b"{", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    resp = await client.post(
        "/v1/orgs/acme/things", data=b"name=a", headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert resp.status == 415
    resp = await client.post("/v1/orgs/acme/things", json={"name": "toolong"}, headers=AUTH)
    assert resp.status == 422
    problem = await resp.json()
    assert problem["errors"][0]["field"] == "name"
    resp = await client.post("/v1/orgs/acme/things", json={"name": "x" * 2000}, headers=AUTH)
    assert resp.status == 413
    resp = await client.post("/v1/orgs/NOT_A_NAME/things", json={"name": "a"}, headers=AUTH)
    assert resp.status == 404


async def test_nul_characters_are_refused_wherever_they_are(
    client: TestClient[web.Request, web.Application],
) -> None:
    """Valid JSON that no database column can store is a 422 naming the field, never a 500."""
    for body, field in (
        (b'{"name": "a\\u0000"}', "name"),
        (b'{"name": "a", "extra": {"deep": ["x", "\\u0000"]}}', "extra.deep.1"),
        (b'{"na\\u0000me": "a"}', "na\\u0000me"),
    ):
        resp = await client.post(
            "/v1/orgs/acme/things", data=body, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert resp.status == 422, body
        assert (await resp.json())["errors"][0]["field"] == field


async def test_unknown_routes_and_methods_are_problems(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    resp = await client.delete("/v1/orgs/acme/things", headers=AUTH)
    assert resp.status == 405
    assert resp.content_type == "application/problem+json"


async def test_a_dependency_outage_is_503_with_retry_after(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/down")
    assert resp.status == 503
    assert int(resp.headers["Retry-After"]) > 0


async def test_openapi_metrics_and_health(client: TestClient[web.Request, web.Application]) -> None:
    doc = await (await client.get("/openapi.json")).json()
    op = doc["paths"]["/v1/orgs/{org}/things"]["post"]
    assert op["security"] == [{"adminToken": []}]
    assert "Thing" in doc["components"]["schemas"]
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await client.get("/nope")
    metrics = await (await client.get("/metrics")).text()
    assert 'landfall_http_requests_total{method="GET",route="unmatched",status="404"}' in metrics


def test_openapi_documents_422_for_operations_with_query_parameters() -> None:
    """Found by `make chaos` (schemathesis): a bad `?limit=` answered a 422 the document did not list."""
    _app, api = create_base_app(service="test", version="0", admin_token=SecretStr(ADMIN))

    async def listing(_: web.Request) -> web.Response:
        return json_response({"items": []})

    api.route(
        "GET",
        "/v1/things",
        listing,
        summary="list",
        query={"limit": {"type": "integer", "minimum": 1, "maximum": 10}},
    )
    api.route("GET", "/v1/plain", listing, summary="no query")
    doc = api.openapi()
    assert "422" in doc["paths"]["/v1/things"]["get"]["responses"]
    assert "422" not in doc["paths"]["/v1/plain"]["get"]["responses"]


@pytest.fixture
async def hostile() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A service with a body and a query parameter, to send what no schema-driven fuzzer makes."""
    app, api = create_base_app(service="test", version="0", admin_token=SecretStr(ADMIN))

    async def echo(request: web.Request) -> web.Response:
        await read_json(request, Loose)
        return json_response({"limit": query_int(request, "limit", default=10, minimum=1, maximum=200)})

    api.route("POST", "/echo", echo, summary="echo", auth="none", request=Loose)
    async with TestClient(TestServer(app)) as c:
        yield c


class Loose(BaseModel):
    model_config = {"extra": "allow"}


def nested(depth: int) -> bytes:
    """An object holding `depth - 1` nested lists: `depth` levels in all."""
    return b'{"a":' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (nested(100_000), 422),  # json.loads would raise RecursionError: it was a 500
        (nested(401), 422),
        (nested(400), 200),
        (b'{"n": ' + b"9" * 5000 + b"}", 422),  # longer than int() converts
        (b'{"n": "\xff\xfe"}', 400),  # not UTF-8
    ],
)
async def test_hostile_bodies_are_refused_with_a_problem_never_a_500(
    hostile: TestClient[web.Request, web.Application], body: bytes, status: int
) -> None:
    resp = await hostile.post("/echo", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    if status != 200:
        assert resp.content_type == "application/problem+json"


@pytest.mark.parametrize("value", ["²", "1_000", "9" * 5000, "0", "201", "-1", " 5", "5.0", "0x10"])
async def test_query_integers_are_ascii_digits_within_bounds(
    hostile: TestClient[web.Request, web.Application], value: str
) -> None:
    resp = await hostile.post(f"/echo?limit={value}", json={})
    assert resp.status == 422
    problem = await resp.json()
    assert problem["errors"][0]["field"] == "limit"


async def test_a_good_query_integer_is_used(hostile: TestClient[web.Request, web.Application]) -> None:
    resp = await hostile.post("/echo?limit=200", json={})
    assert await resp.json() == {"limit": 200}
