"""What Landfall asks container registries, and the answers as plain sentences.

Why this exists: "test connection" and "which digest does this tag point to" must
be answered by the registry itself, with the stored credentials, the way a
container runtime would ask (the credentials service from the control plane, the
agent from inside the cluster). The calls go through `auth.AuthFlow`
(the distribution token dance); this module decides what each answer means.

What is subtle:

* Docker Hub and other token registries answer 401 both for "no such repository"
  and "not yours", so a 401 on a repository is reported as "no pull access (or
  it does not exist)". Only `NAME_UNKNOWN` proves a repository is missing.
* A detail never contains credentials or tokens: only hosts, repositories,
  HTTP statuses and registry error codes.
* Tag lookups (`resolve`) reuse bearer tokens; checks (`check`, "test
  connection") never do: they exist to ask the registry now.
* Which addresses a call may reach is `egress.EgressPolicy`, in two places that
  must get the same policy: the session's resolver (`new_session`) for names, and
  `AuthFlow` for IP literals, realms and proxies.
"""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from libs.contracts.messages import ResolvedImage
from libs.oci.reference import InvalidReference, validate_digest
from libs.oci.registry.auth import USER_AGENT, AuthFlow, RegistryCallFailed
from libs.oci.registry.egress import EgressPolicy, PolicyResolver
from libs.oci.registry.types import CheckResult, Credentials

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def new_session(
    *,
    timeout: float,
    trust_env: bool = False,
    policy: EgressPolicy | None = None,
    resolver: AbstractResolver | None = None,
    user_agent: str = USER_AGENT,
) -> aiohttp.ClientSession:
    """The one session for every registry: no cookie jar (see `registry_auth`), and a resolver that
    hands the connector only the addresses `policy` allows (`egress`; the default allows only
    global ones). `resolver` is the lookup underneath (the system's by default; tests pass one)."""
    policy = policy if policy is not None else EgressPolicy()
    policy.announce()
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": user_agent},
        trust_env=trust_env,
        connector=aiohttp.TCPConnector(resolver=PolicyResolver(policy, resolver)),
    )


async def close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Lets the SSL transports finish closing (aiohttp's documented graceful-shutdown pause).
    await asyncio.sleep(0)


class RegistryClient:
    def __init__(self, flow: AuthFlow) -> None:
        """The flow's policy must be the one given to `new_session` for its session."""
        self.flow = flow

    async def probe(self, host: str) -> CheckResult:
        """Does `host` answer the registry API at all? (Any HTTP answer, even 401, counts.)"""
        try:
            answer = await self.flow.send("GET", URL(self.flow.base_url(host) + "/v2/"), {}, host=host)
        except RegistryCallFailed as exc:
            return CheckResult(False, exc.detail)
        if answer.status == 404:
            return CheckResult(False, f"{host} does not serve the registry API (GET /v2/ answered 404)")
        return CheckResult(True, f"{host} is reachable (GET /v2/ answered HTTP {answer.status})")

    async def check(
        self, host: str, credentials: Credentials | None, repository: str | None = None
    ) -> CheckResult:
        """Can these credentials log in (and pull from `repository`)? Answered by the registry."""
        try:
            base = await self.flow.call("GET", host, "/v2/", credentials=credentials)
        except RegistryCallFailed as exc:
            return CheckResult(False, exc.detail)
        if base.status in (401, 403):
            if credentials is None:
                return CheckResult(False, f"unauthorized: {host} requires credentials for its API")
            return CheckResult(
                False, f"unauthorized: {host} refused the username and password (HTTP {base.status})"
            )
        if base.status == 404:
            return CheckResult(False, f"{host} does not serve the registry API (GET /v2/ answered 404)")
        if base.status != 200:
            return CheckResult(False, f"{host} answered GET /v2/ with HTTP {base.status}")
        who = f"authenticated to {host} as {credentials.username}" if credentials else f"{host} is reachable"
        if repository is None:
            return CheckResult(True, who)

        try:
            tags = await self.flow.call(
                "GET",
                host,
                f"/v2/{repository}/tags/list?n=1",
                credentials=credentials,
                scope=f"repository:{repository}:pull",
            )
        except RegistryCallFailed as exc:
            return CheckResult(False, exc.detail)
        if tags.status == 200:
            how = "with these credentials" if credentials else "anonymously"
            return CheckResult(True, f"{who}; {repository} exists and can be pulled {how}")
        if tags.status == 404 and "NAME_UNKNOWN" in tags.error_codes():
            return CheckResult(False, f"not found: repository {repository} does not exist on {host}")
        if tags.status in (401, 403, 404):
            subject = "these credentials have" if credentials else "anonymous access has"
            return CheckResult(
                False,
                f"unauthorized: {subject} no pull access to {repository} on {host} "
                f"(or it does not exist; HTTP {tags.status})",
            )
        return CheckResult(False, f"{host} answered HTTP {tags.status} for {repository}")

    async def resolve(
        self, host: str, credentials: Credentials | None, repository: str, reference: str
    ) -> ResolvedImage:
        """The digest `repository:reference` points to now."""
        image = f"{host}/{repository}{'@' if ':' in reference else ':'}{reference}"
        path = f"/v2/{repository}/manifests/{reference}"
        scope = f"repository:{repository}:pull"
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            answer = await self.flow.call(
                "HEAD", host, path, credentials=credentials, scope=scope, headers=headers, reuse_token=True
            )
            digest = _digest(answer.headers.get("Docker-Content-Digest"))
            if answer.status == 200 and digest is None:
                # Some registries omit the header on HEAD: the digest is the hash of the body.
                answer = await self.flow.call(
                    "GET", host, path, credentials=credentials, scope=scope, headers=headers, reuse_token=True
                )
                digest = _digest(answer.headers.get("Docker-Content-Digest")) or (
                    "sha256:" + hashlib.sha256(answer.body).hexdigest() if answer.status == 200 else None
                )
        except RegistryCallFailed as exc:
            return ResolvedImage(status=exc.kind, detail=exc.detail)
        if answer.status == 200 and digest is not None:
            return ResolvedImage(status="resolved", digest=digest, detail=f"{image} is {digest}")
        if answer.status == 404:
            return ResolvedImage(status="not_found", detail=f"not found: {image} does not exist")
        if answer.status in (401, 403):
            return ResolvedImage(
                status="unauthorized",
                detail=f"unauthorized: {host} refused to show {image} (HTTP {answer.status})",
            )
        return ResolvedImage(status="unreachable", detail=f"{host} answered HTTP {answer.status} for {image}")


def _digest(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return validate_digest(value.strip())
    except InvalidReference:
        return None
