"""Real registry calls: "test connection", tag -> digest, sealed pull secrets.

Against the session's docker-registry (htpasswd: the Basic flow), an anonymous
docker-registry, and a small token issuer + registry front run by the test
itself (the Bearer flow of the distribution token spec).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from libs.contracts.messages import (
    PullSecretReply,
    PullSecretRequest,
    RegistryGet,
    RegistryInfo,
    ResolvedImage,
    ResolveImage,
)
from libs.devstack.servers import DockerRegistry, free_port
from libs.runtime.bus import RpcFailed
from services.credentials.settings import Settings
from tests.conftest import REGISTRY_USERS
from tests.integration.credentials.helpers import (
    LOCAL_REGISTRIES,
    ORG,
    OTHER_ORG,
    REGISTRIES,
    Harness,
    running,
)
from tests.support import settings_from

USER, PASSWORD = next(iter(REGISTRY_USERS.items()))


@pytest.fixture
def settings(base_env: dict[str, str]) -> Settings:
    return settings_from(
        Settings, base_env, registry_timeout_seconds=5, registry_private_hosts=LOCAL_REGISTRIES
    )


async def register(svc: Harness, host: str, auth: dict[str, Any] | None = None, org: str = ORG) -> str:
    body = {
        "display_name": f"reg-{uuid.uuid4().hex[:6]}",
        "auth": {"type": "anonymous", **(auth or {}), "host": host},
    }
    created = await svc.create(body, org=org)
    return str(created["id"])


async def run_test(svc: Harness, registry_id: str, repository: str | None = None) -> dict[str, Any]:
    body = {"repository": repository} if repository is not None else {}
    resp = await svc.client.post(f"{REGISTRIES}/{registry_id}/test", json=body, headers=svc.headers)
    data: dict[str, Any] = await resp.json()
    assert resp.status == 200, data
    assert set(data) == {"ok", "detail"}
    return data


def basic(password: str = PASSWORD, user: str = USER) -> dict[str, str]:
    return {"type": "basic", "username": user, "password": password}


# --- test connection: the Basic flow (htpasswd registry) ----------------------------------------


async def test_good_credentials_log_in_and_can_pull(svc: Harness, docker_registry: DockerRegistry) -> None:
    repo = f"team/app{uuid.uuid4().hex[:6]}"
    await _push(docker_registry, repo, "1.0", user=USER, password=PASSWORD)
    registry_id = await register(svc, docker_registry.host, basic())

    login = await run_test(svc, registry_id)
    assert login["ok"] is True, login
    assert USER in login["detail"]

    pull = await run_test(svc, registry_id, repo)
    assert pull["ok"] is True, pull
    assert repo in pull["detail"]

    missing = await run_test(svc, registry_id, "team/does-not-exist")
    assert missing["ok"] is False
    assert "does not exist" in missing["detail"]

    tests = [e for e in await svc.audit.wait_for(4) if e.action == "registry.test"]
    assert [(e.target, e.outcome, e.detail.split(":")[0]) for e in tests] == [
        (registry_id, "ok", "ok"),
        (registry_id, "ok", "ok"),
        (registry_id, "ok", "not ok"),
    ]
    assert "does not exist" in tests[-1].detail


async def test_a_wrong_password_is_reported_as_unauthorized(
    svc: Harness, docker_registry: DockerRegistry
) -> None:
    wrong = "not-the-password-" + uuid.uuid4().hex
    registry_id = await register(svc, docker_registry.host, basic(password=wrong))
    result = await run_test(svc, registry_id)
    assert result["ok"] is False
    assert "unauthorized" in result["detail"]
    assert wrong not in result["detail"]
    assert (await run_test(svc, registry_id, "team/app"))["ok"] is False


async def test_docker_config_credentials_are_used_too(svc: Harness, docker_registry: DockerRegistry) -> None:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    created = await svc.create(
        {
            "display_name": "pasted",
            "auth": {
                "type": "docker-config",
                "config": {"auths": {f"http://{docker_registry.host}/v2/": {"auth": auth}}},
            },
        }
    )
    assert created["host"] == docker_registry.host
    assert (await run_test(svc, created["id"]))["ok"] is True


async def test_anonymous_access_is_checked_for_what_it_is(
    svc: Harness, docker_registry: DockerRegistry, anonymous_registry: DockerRegistry
) -> None:
    refused = await run_test(svc, await register(svc, docker_registry.host))
    assert refused["ok"] is False
    assert "requires credentials" in refused["detail"]

    repo = f"pub/app{uuid.uuid4().hex[:6]}"
    await _push(anonymous_registry, repo, "latest")
    open_id = await register(svc, anonymous_registry.host)
    assert (await run_test(svc, open_id))["ok"] is True
    assert (await run_test(svc, open_id, repo))["ok"] is True
    assert (await run_test(svc, open_id, f"{anonymous_registry.host}/{repo}"))["ok"] is True


async def test_an_unreachable_registry_is_said_to_be_unreachable(svc: Harness) -> None:
    registry_id = await register(svc, f"127.0.0.1:{free_port()}", basic())
    result = await run_test(svc, registry_id)
    assert result["ok"] is False
    assert "unreachable" in result["detail"]


async def test_an_invalid_repository_is_a_422(svc: Harness, docker_registry: DockerRegistry) -> None:
    registry_id = await register(svc, docker_registry.host, basic())
    for bad in ("Team/App", "team/app:1.0", "", "a//b"):
        resp = await svc.client.post(
            f"{REGISTRIES}/{registry_id}/test", json={"repository": bad}, headers=svc.headers
        )
        assert resp.status == 422, bad
        assert [e["field"] for e in (await resp.json())["errors"]] == ["repository"]


# --- test connection: the Bearer flow (token issuer run by the test) -----------------------------


@dataclass
class TokenRegistry:
    """A registry front that wants bearer tokens, and the token service that issues them."""

    users: dict[str, str]
    pullable: set[str]
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> granted scope ("" = none)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_get("/v2/", self.base)
        app.router.add_get(r"/v2/{repo:.+}/tags/list", self.tags)
        app.router.add_route("HEAD", r"/v2/{repo:.+}/manifests/{ref}", self.manifest)
        return app

    def challenge(self, request: web.Request, scope: str) -> web.Response:
        header = f'Bearer realm="http://{request.host}/token",service="test",scope="{scope}"'
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
            status=401,
            headers={"WWW-Authenticate": header},
        )

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return web.json_response({"details": "credentials required"}, status=401)
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if self.users.get(user) != password:
            return web.json_response({"details": "incorrect username or password"}, status=401)
        scope = request.query.get("scope", "")
        repo = scope.split(":")[1] if scope.count(":") == 2 else ""
        token = "tok-" + uuid.uuid4().hex
        self.tokens[token] = scope if repo in self.pullable else ""
        return web.json_response({"access_token": token, "expires_in": 300})

    def granted(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return self.tokens.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None

    async def base(self, request: web.Request) -> web.Response:
        if self.granted(request) is None:
            return self.challenge(request, "repository:x:pull")
        return web.json_response({})

    async def tags(self, request: web.Request) -> web.Response:
        repo = request.match_info["repo"]
        if self.granted(request) != f"repository:{repo}:pull":
            return self.challenge(request, f"repository:{repo}:pull")
        return web.json_response({"name": repo, "tags": ["1.0"]})

    async def manifest(self, request: web.Request) -> web.Response:
        repo, ref = request.match_info["repo"], request.match_info["ref"]
        if self.granted(request) != f"repository:{repo}:pull":
            return self.challenge(request, f"repository:{repo}:pull")
        digest = self.digests.get((repo, ref))
        if digest is None:
            return web.Response(status=404)
        return web.Response(status=200, headers={"Docker-Content-Digest": digest})


@contextlib.asynccontextmanager
async def token_registry(front: TokenRegistry) -> AsyncIterator[str]:
    server = TestServer(front.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.close()


async def test_the_bearer_token_flow_with_good_and_bad_credentials(svc: Harness) -> None:
    front = TokenRegistry(users={"robot": "tok-pass-1"}, pullable={"x"})
    async with token_registry(front) as host:
        good = await register(svc, host, basic(user="robot", password="tok-pass-1"))
        login = await run_test(svc, good)
        assert login["ok"] is True, login
        assert front.token_requests[-1] == {"service": "test", "scope": "repository:x:pull"}

        pull = await run_test(svc, good, "x")
        assert pull["ok"] is True, pull
        assert front.token_requests[-1]["scope"] == "repository:x:pull"

        denied = await run_test(svc, good, "team/secret")
        assert denied["ok"] is False
        assert "no pull access" in denied["detail"]
        assert front.token_requests[-1]["scope"] == "repository:team/secret:pull"

        bad = await register(svc, host, basic(user="robot", password="wrong-pass"))
        refused = await run_test(svc, bad)
        assert refused["ok"] is False
        assert "unauthorized" in refused["detail"]
        assert "wrong-pass" not in refused["detail"]

        anonymous = await run_test(svc, await register(svc, host))
        assert anonymous["ok"] is False
        assert "unauthorized" in anonymous["detail"]


async def test_resolve_uses_the_bearer_flow(svc: Harness) -> None:
    digest = "sha256:" + hashlib.sha256(b"manifest").hexdigest()
    front = TokenRegistry(users={"robot": "tok-pass-1"}, pullable={"x"}, digests={("x", "1.0"): digest})
    async with token_registry(front) as host:
        registry_id = await register(svc, host, basic(user="robot", password="tok-pass-1"))
        resolved = await resolve(svc, registry_id, "x", "1.0")
        assert (resolved.status, resolved.digest) == ("resolved", digest)
        assert front.token_requests[-1]["scope"] == "repository:x:pull"
        assert (await resolve(svc, registry_id, "x", "2.0")).status == "not_found"


async def test_tag_lookups_reuse_the_bearer_token_and_fetch_a_new_one_when_it_is_refused(
    svc: Harness,
) -> None:
    """One registry round trip per deploy instead of three; a token the registry refuses is replaced."""
    digest = "sha256:" + hashlib.sha256(b"manifest").hexdigest()
    front = TokenRegistry(users={"robot": "tok-pass-1"}, pullable={"x"}, digests={("x", "1.0"): digest})
    async with token_registry(front) as host:
        registry_id = await register(svc, host, basic(user="robot", password="tok-pass-1"))
        for _ in range(3):
            resolved = await resolve(svc, registry_id, "x", "1.0")
            assert (resolved.status, resolved.digest) == ("resolved", digest)
        assert len(front.token_requests) == 1

        front.tokens.clear()  # the registry forgets every token it issued (say, a key rotation)
        resolved = await resolve(svc, registry_id, "x", "1.0")
        assert (resolved.status, resolved.digest) == ("resolved", digest)
        assert len(front.token_requests) == 2

        # Other credentials never get this token: another registry entry for the same host and scope.
        other = await register(svc, host, basic(user="robot", password="wrong-pass"))
        assert (await resolve(svc, other, "x", "1.0")).status == "unauthorized"
        assert len(front.token_requests) == 3

        # "Test connection" asks the registry every time (for the login and for the pull).
        counts = [len(front.token_requests)]
        for _ in range(2):
            assert (await run_test(svc, registry_id, "x"))["ok"] is True
            counts.append(len(front.token_requests))
        assert counts[2] - counts[1] == counts[1] - counts[0] >= 1


# --- RPC: registry, resolve, pull secret --------------------------------------------------------


async def resolve(
    svc: Harness, registry_id: str, repository: str, reference: str, org: str = ORG
) -> ResolvedImage:
    return await svc.bus.request(
        svc.bus.subjects.rpc_resolve_image,
        ResolveImage(org=org, registry_id=registry_id, repository=repository, reference=reference),
        ResolvedImage,
        timeout=10,
    )


async def test_registry_get_answers_the_org_own_registries_only(svc: Harness) -> None:
    registry_id = await register(svc, "myacr.azurecr.io", {"type": "vendor", "vendor": "azure"})
    info = await svc.bus.request(
        svc.bus.subjects.rpc_registry_get, RegistryGet(org=ORG, registry_id=registry_id), RegistryInfo
    )
    assert info == RegistryInfo(
        id=registry_id, org=ORG, host="myacr.azurecr.io", auth_type="vendor", vendor="azure"
    )
    for org, rid in ((OTHER_ORG, registry_id), (ORG, "reg_" + "0" * 26), (ORG, "garbage")):
        with pytest.raises(RpcFailed) as failed:
            await svc.bus.request(
                svc.bus.subjects.rpc_registry_get, RegistryGet(org=org, registry_id=rid), RegistryInfo
            )
        assert failed.value.error.code == "not_found"


async def test_resolve_a_tag_to_the_pushed_digest(svc: Harness, docker_registry: DockerRegistry) -> None:
    repo = f"team/app{uuid.uuid4().hex[:6]}"
    pushed = await _push(docker_registry, repo, "1.4.2", user=USER, password=PASSWORD)
    registry_id = await register(svc, docker_registry.host, basic())

    resolved = await resolve(svc, registry_id, repo, "1.4.2")
    assert resolved.status == "resolved", resolved
    assert resolved.digest == pushed
    by_digest = await resolve(svc, registry_id, repo, pushed)
    assert (by_digest.status, by_digest.digest) == ("resolved", pushed)

    missing = await resolve(svc, registry_id, repo, "9.9.9")
    assert missing.status == "not_found"
    assert missing.digest is None
    assert (await resolve(svc, registry_id, "team/nothing-here", "1.0")).status == "not_found"
    assert (await resolve(svc, registry_id, repo, "bad tag!")).status == "not_found"

    wrong = await register(svc, docker_registry.host, basic(password="nope"))
    assert (await resolve(svc, wrong, repo, "1.4.2")).status == "unauthorized"
    anonymous = await register(svc, docker_registry.host)
    assert (await resolve(svc, anonymous, repo, "1.4.2")).status == "unauthorized"

    gone = await register(svc, f"127.0.0.1:{free_port()}")
    assert (await resolve(svc, gone, repo, "1.4.2")).status == "unreachable"

    with pytest.raises(RpcFailed) as failed:
        await resolve(svc, registry_id, repo, "1.4.2", org=OTHER_ORG)
    assert failed.value.error.code == "not_found"


async def test_vendor_registries_are_not_resolved(svc: Harness) -> None:
    registry_id = await register(svc, "europe-docker.pkg.dev", {"type": "vendor", "vendor": "gcp"})
    skipped = await resolve(svc, registry_id, "acme/app", "1.0")
    assert skipped == ResolvedImage(
        status="skipped", detail="vendor registry: the data plane's cloud identity pulls; tag not pinned"
    )


PLANE = "dp_test"


async def pull_secret(
    svc: Harness, registry_id: str, enrolled: str | None, *, named: str = ""
) -> PullSecretReply:
    """Ask for a pull secret for PLANE, whose enrolled key (held by the fake orchestrator) is
    `enrolled`; `named` is the key the request itself carries (which the service must ignore)."""
    svc.orchestrator.plane_keys[(ORG, PLANE)] = enrolled
    return await svc.bus.request(
        svc.bus.subjects.rpc_pull_secret,
        PullSecretRequest(org=ORG, registry_id=registry_id, dataplane_id=PLANE, recipient_public_key=named),
        PullSecretReply,
    )


@pytest.mark.parametrize("kind", ["basic", "docker-config"])
async def test_the_sealed_pull_secret_opens_and_authenticates(
    svc: Harness, docker_registry: DockerRegistry, kind: str
) -> None:
    if kind == "basic":
        registry_id = await register(svc, docker_registry.host, basic())
    else:
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        config = {"auths": {docker_registry.host: {"auth": auth}}}
        registry_id = (
            await svc.create({"display_name": "pasted", "auth": {"type": "docker-config", "config": config}})
        )["id"]
    plane_key = PrivateKey.generate()
    public = bytes(plane_key.public_key)

    reply = await pull_secret(svc, registry_id, base64.b64encode(public).decode())
    assert reply.reason == "sealed"
    assert reply.sealed is not None
    assert reply.sealed.registry_id == registry_id
    assert reply.sealed.recipient_key_id == hashlib.sha256(public).hexdigest()[:16]
    assert PASSWORD not in reply.model_dump_json()

    config_json = json.loads(SealedBox(plane_key).decrypt(base64.b64decode(reply.sealed.ciphertext)))
    ((server, entry),) = config_json["auths"].items()
    assert server == docker_registry.host
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{docker_registry.url}/v2/", headers={"Authorization": f"Basic {entry['auth']}"}
        ) as ok:
            assert ok.status == 200
        async with http.get(f"{docker_registry.url}/v2/") as refused:
            assert refused.status == 401

    with pytest.raises(CryptoError):  # sealed to one key only
        SealedBox(PrivateKey.generate()).decrypt(base64.b64decode(reply.sealed.ciphertext))


async def test_no_pull_secret_for_anonymous_and_vendor_registries(svc: Harness) -> None:
    key = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
    anonymous = await register(svc, "ghcr.io")
    assert await pull_secret(svc, anonymous, key) == PullSecretReply(sealed=None, reason="anonymous")
    vendor = await register(svc, "myacr.azurecr.io", {"type": "vendor", "vendor": "azure"})
    assert await pull_secret(svc, vendor, key) == PullSecretReply(sealed=None, reason="vendor")


async def test_the_pull_secret_is_sealed_to_the_enrolled_key_not_the_one_in_the_request(
    svc: Harness, docker_registry: DockerRegistry
) -> None:
    registry_id = await register(svc, docker_registry.host, basic())
    enrolled, chosen = PrivateKey.generate(), PrivateKey.generate()
    reply = await pull_secret(
        svc,
        registry_id,
        base64.b64encode(bytes(enrolled.public_key)).decode(),
        named=base64.b64encode(bytes(chosen.public_key)).decode(),
    )
    assert reply.sealed is not None
    assert reply.sealed.recipient_key_id == hashlib.sha256(bytes(enrolled.public_key)).hexdigest()[:16]
    ciphertext = base64.b64decode(reply.sealed.ciphertext)
    assert list(json.loads(SealedBox(enrolled).decrypt(ciphertext))["auths"]) == [docker_registry.host]
    with pytest.raises(CryptoError):  # the requester's key of choice opens nothing
        SealedBox(chosen).decrypt(ciphertext)


async def test_no_enrolled_key_is_not_enrolled_and_seals_nothing(svc: Harness) -> None:
    registry_id = await register(svc, "ghcr.io", basic())
    anybody = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()
    assert await pull_secret(svc, registry_id, None, named=anybody) == PullSecretReply(
        sealed=None, reason="not_enrolled"
    )
    svc.orchestrator.plane_keys.clear()  # a plane the orchestrator does not know (deleted meanwhile)
    reply = await svc.bus.request(
        svc.bus.subjects.rpc_pull_secret,
        PullSecretRequest(
            org=ORG, registry_id=registry_id, dataplane_id="dp_gone", recipient_public_key=anybody
        ),
        PullSecretReply,
    )
    assert reply == PullSecretReply(sealed=None, reason="not_enrolled")


async def test_no_orchestrator_answer_is_unavailable(settings: Settings) -> None:
    async with running(settings, orchestrator=False) as svc:
        registry_id = await register(svc, "ghcr.io", basic())
        with pytest.raises(RpcFailed) as failed:
            await svc.bus.request(
                svc.bus.subjects.rpc_pull_secret,
                PullSecretRequest(org=ORG, registry_id=registry_id, dataplane_id=PLANE),
                PullSecretReply,
                timeout=10,
            )
        assert failed.value.error.code == "unavailable"


async def test_a_bad_recipient_key_is_an_invalid_request(svc: Harness) -> None:
    registry_id = await register(svc, "ghcr.io", basic())
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(RpcFailed) as failed:
            await pull_secret(svc, registry_id, bad)
        assert failed.value.error.code == "invalid"


async def _push(
    registry: DockerRegistry, repo: str, tag: str, *, user: str | None = None, password: str | None = None
) -> str:
    return await asyncio.to_thread(registry.push_image, repo, tag, username=user, password=password)
