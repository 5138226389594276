"""OCI distribution API client: the only module that talks to container registries.

Why this exists: "test connection" and "which digest does this tag point to" must
be answered by the registry itself, with the stored credentials, the way a
container runtime would ask. This module does the token dance of the
distribution spec and turns every answer into a plain sentence.

How a call goes (distribution "token authentication" spec):

1. Send the request without credentials.
2. On 401, read `WWW-Authenticate`:
   - `Basic realm=...`: send it again with basic auth (when we have credentials);
   - `Bearer realm=...,service=...,scope=...`: GET the realm with `service` and the
     `scope` we need (`repository:<repo>:pull`), with basic auth when we have
     credentials, take `token` (or `access_token`) and send the request again
     with `Authorization: Bearer <token>`.
3. Whatever then comes back is the answer.

What is subtle:

* Plain HTTP is used only for hosts listed in `insecure_registries` (loopback by
  default); everything else is HTTPS with certificate checks. Credentials are
  never sent to a plain-HTTP token realm unless that host is listed too.
* No cookies are kept (a shared cookie jar would carry one tenant's session into
  another tenant's call), and aiohttp drops `Authorization` on a redirect to
  another origin.
* Docker Hub and other token registries answer 401 both for "no such repository"
  and "not yours", so a 401 on a repository is reported as "no pull access (or
  it does not exist)". Only `NAME_UNKNOWN` proves a repository is missing.
* A detail never contains credentials or tokens: only hosts, repositories,
  HTTP statuses and registry error codes.
* Tag lookups (`resolve`, once per deploy) reuse a bearer token until shortly before
  it expires (`expires_in`, at most 5 minutes), keyed by host, scope and a hash of the
  credentials, so a Docker Hub or GHCR lookup is one round trip instead of three. A
  401 with a cached token drops it and runs the whole flow. Checks (`check`, "test
  connection") never reuse one: they exist to ask the registry now.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from libs.contracts.messages import ResolvedImage
from libs.oci.reference import InvalidReference, registry_api_host, validate_digest
from services.credentials.rules import uses_plain_http

MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
USER_AGENT = "landfall-credentials/0.1"
MAX_BODY = 4 * 1024 * 1024  # distribution refuses manifests above 4 MiB
MAX_TOKEN_BODY = 64 * 1024
TOKEN_CACHE_MAX = 10_000  # bearer tokens kept for tag lookups (expired ones are dropped first)
TOKEN_REUSE_MAX_SECONDS = 300.0  # a token is reused for at most this long, whatever it says
TOKEN_MARGIN_SECONDS = 10.0  # and dropped this long before it expires


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    username: str
    password: str = field(repr=False)

    def header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # lowercase: "basic", "bearer"
    params: Mapping[str, str]


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*,?')
_SCHEME_RE = re.compile(rf"\s*,?\s*({_TOKEN})(?:\s+|$)")


def parse_www_authenticate(headers: Iterable[str]) -> list[Challenge]:
    """The challenges in `WWW-Authenticate` header values (RFC 9110 section 11.6.1).

    Lenient about what registries really send: unquoted values, missing spaces
    after commas, several challenges in one header or one per header.
    """
    challenges: list[Challenge] = []
    for header in headers:
        pos = 0
        while pos < len(header):
            scheme = _SCHEME_RE.match(header, pos)
            if scheme is None:
                break
            pos = scheme.end()
            params: dict[str, str] = {}
            while pos < len(header):
                param = _PARAM_RE.match(header, pos)
                if param is None:
                    break
                # A token followed by "=" is a parameter; a bare token starts the next challenge.
                quoted, bare = param.group(2), param.group(3)
                value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
                params[param.group(1).lower()] = value
                pos = param.end()
            challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def api_base_url(host: str, insecure: Iterable[str]) -> str:
    """Where `host`'s distribution API lives: Docker Hub's API host, HTTPS unless listed insecure."""
    api_host = registry_api_host(host)
    scheme = "http" if uses_plain_http(api_host, insecure) else "https"
    return f"{scheme}://{api_host}"


class RegistryCallFailed(Exception):
    """The call did not get an answer from the registry we could use; `detail` says why."""

    def __init__(self, kind: Literal["unreachable", "unauthorized"], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def error_codes(self) -> list[str]:
        """The `errors[].code` of a distribution error body (empty when there is none)."""
        try:
            doc = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return []
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if not isinstance(errors, list):
            return []
        return [str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code")]


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str


class RegistryClient:
    """One shared `aiohttp.ClientSession` (no cookies) for all registries of all tenants."""

    def __init__(self, session: aiohttp.ClientSession, *, insecure: Iterable[str]) -> None:
        self.session = session
        self.insecure = list(insecure)
        # (host, scope, sha256 of the credentials or "") -> (bearer token, monotonic time it is good until)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    def _remember(self, key: tuple[str, str, str], token: str, expires_in: float) -> None:
        now = time.monotonic()
        if len(self._tokens) >= TOKEN_CACHE_MAX:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
        if len(self._tokens) < TOKEN_CACHE_MAX:
            self._tokens[key] = (token, now + min(expires_in, TOKEN_REUSE_MAX_SECONDS) - TOKEN_MARGIN_SECONDS)

    @staticmethod
    def new_session(*, timeout: float, trust_env: bool = False) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
            trust_env=trust_env,
        )

    def base_url(self, host: str) -> str:
        return api_base_url(host, self.insecure)

    # --- transport ------------------------------------------------------------------------

    async def _send(
        self, method: str, url: URL, headers: Mapping[str, str], *, host: str, limit: int = MAX_BODY
    ) -> Answer:
        try:
            async with self.session.request(method, url, headers=dict(headers)) as resp:
                body = b"" if method == "HEAD" else await resp.content.read(limit)
                return Answer(resp.status, resp.headers, body)
        except aiohttp.ClientConnectorCertificateError:
            raise RegistryCallFailed(
                "unreachable", f"unreachable: the TLS certificate of {host} is not trusted"
            ) from None
        except aiohttp.ClientSSLError:
            raise RegistryCallFailed(
                "unreachable",
                f"unreachable: the TLS handshake with {host} failed; if it serves plain HTTP, "
                "add it to LANDFALL_INSECURE_REGISTRIES",
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            raise RegistryCallFailed(
                "unreachable", f"unreachable: cannot connect to {host} ({reason})"
            ) from None
        except TimeoutError:
            raise RegistryCallFailed("unreachable", f"unreachable: {host} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise RegistryCallFailed(
                "unreachable", f"unreachable: the connection to {host} failed ({type(exc).__name__})"
            ) from None

    async def _token(
        self, challenge: Challenge, credentials: BasicCredentials | None, scope: str | None, *, host: str
    ) -> tuple[str, float]:
        """A bearer token from the challenge's realm, and for how many seconds it is good."""
        realm = challenge.params.get("realm", "")
        try:
            url = URL(realm)
        except ValueError:
            url = URL()
        if url.scheme not in ("http", "https") or not url.host:
            raise RegistryCallFailed("unreachable", f"{host} sent an unusable token realm")
        realm_host = url.raw_authority
        query = {k: v for k, v in (("service", challenge.params.get("service")), ("scope", scope)) if v}
        url = url.update_query(query)
        headers: dict[str, str] = {}
        if credentials is not None:
            if url.scheme == "http" and not uses_plain_http(realm_host, self.insecure):
                raise RegistryCallFailed(
                    "unreachable",
                    f"the token service of {host} ({realm_host}) uses plain HTTP; credentials are not "
                    "sent over plain HTTP unless the host is in LANDFALL_INSECURE_REGISTRIES",
                )
            headers["Authorization"] = credentials.header()
        answer = await self._send("GET", url, headers, host=realm_host, limit=MAX_TOKEN_BODY)
        if answer.status in (401, 403):
            who = "the username and password" if credentials is not None else "anonymous access"
            raise RegistryCallFailed(
                "unauthorized",
                f"unauthorized: the token service of {host} refused {who} (HTTP {answer.status})",
            )
        if answer.status != 200:
            raise RegistryCallFailed(
                "unreachable", f"unreachable: the token service of {host} answered HTTP {answer.status}"
            )
        try:
            doc = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError):
            doc = None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryCallFailed("unreachable", f"the token service of {host} sent no token")
        expires_in = doc.get("expires_in") if isinstance(doc, dict) else None
        # The spec's default lifetime is 60 s when the issuer does not say.
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 60.0
        return token, lifetime

    async def call(
        self,
        method: str,
        host: str,
        path: str,
        *,
        credentials: BasicCredentials | None,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
        reuse_token: bool = False,
    ) -> Answer:
        """`method` on `path` of `host`'s registry API, through the auth flow (see module docstring)."""
        url = URL(self.base_url(host) + path, encoded=True)
        base_headers = dict(headers or {})
        who = hashlib.sha256(credentials.header().encode()).hexdigest() if credentials is not None else ""
        key = (host, scope or "", who)
        cached = self._tokens.get(key) if reuse_token and scope else None
        if cached is not None and cached[1] > time.monotonic():
            answer = await self._send(
                method, url, {**base_headers, "Authorization": f"Bearer {cached[0]}"}, host=host
            )
            if answer.status != 401:
                return answer
            self._tokens.pop(key, None)  # revoked or expired early: the whole flow again
        answer = await self._send(method, url, base_headers, host=host)
        if answer.status != 401:
            return answer
        challenges = parse_www_authenticate(answer.headers.getall("WWW-Authenticate", []))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            token, lifetime = await self._token(
                bearer, credentials, scope or bearer.params.get("scope"), host=host
            )
            if reuse_token and scope:
                self._remember(key, token, lifetime)
            authorization = f"Bearer {token}"
        elif basic is not None and credentials is not None:
            authorization = credentials.header()
        else:
            return answer
        return await self._send(method, url, {**base_headers, "Authorization": authorization}, host=host)

    # --- what the service asks ------------------------------------------------------------

    async def probe(self, host: str) -> CheckResult:
        """Does `host` answer the registry API at all? (Any HTTP answer, even 401, counts.)"""
        try:
            answer = await self._send("GET", URL(self.base_url(host) + "/v2/"), {}, host=host)
        except RegistryCallFailed as exc:
            return CheckResult(False, exc.detail)
        if answer.status == 404:
            return CheckResult(False, f"{host} does not serve the registry API (GET /v2/ answered 404)")
        return CheckResult(True, f"{host} is reachable (GET /v2/ answered HTTP {answer.status})")

    async def check(
        self, host: str, credentials: BasicCredentials | None, repository: str | None = None
    ) -> CheckResult:
        """Can these credentials log in (and pull from `repository`)? Answered by the registry."""
        try:
            base = await self.call("GET", host, "/v2/", credentials=credentials)
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
            tags = await self.call(
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
        self, host: str, credentials: BasicCredentials | None, repository: str, reference: str
    ) -> ResolvedImage:
        """The digest `repository:reference` points to now."""
        image = f"{host}/{repository}{'@' if ':' in reference else ':'}{reference}"
        path = f"/v2/{repository}/manifests/{reference}"
        scope = f"repository:{repository}:pull"
        headers = {"Accept": MANIFEST_ACCEPT}
        try:
            answer = await self.call(
                "HEAD", host, path, credentials=credentials, scope=scope, headers=headers, reuse_token=True
            )
            digest = _digest(answer.headers.get("Docker-Content-Digest"))
            if answer.status == 200 and digest is None:
                # Some registries omit the header on HEAD: the digest is the hash of the body.
                answer = await self.call(
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


async def close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Lets the SSL transports finish closing (aiohttp's documented graceful-shutdown pause).
    await asyncio.sleep(0)
