"""The distribution API's transport and auth flow: how one call reaches a registry.

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
* Every call passes `egress.EgressPolicy` (global addresses only, unless the
  operator lists more), checked on the address connected to.
* Redirects are not followed at all: a 3xx is "refused by policy". The calls made
  here (`/v2/`, tags, manifests, token realms) are answered in place by real
  registries (only blob downloads redirect, and the control plane fetches no
  blobs), and following them would need the policy re-checked per hop, the
  `Authorization` and plain-HTTP rules re-applied per hop, and aiohttp's redirect
  to an IP literal never passes the resolver. Not following is the smaller rule.
* A bearer realm must be on the registry's own host name, a known vendor's token
  host (`egress.KNOWN_TOKEN_HOSTS`: Docker Hub, GitLab.com) or one the operator
  lists in `LANDFALL_REGISTRY_TOKEN_HOSTS`; otherwise a registry could point the
  control plane (with the tenant's password) at any host it likes.
* No cookies are kept (a shared cookie jar would carry one tenant's session into
  another tenant's call).
* Every failure to get a usable answer is `RegistryCallFailed` with a sentence
  that holds only the hosts the registry named and HTTP statuses: never
  credentials, tokens, OS error strings, resolved addresses or answer bodies
  (a detail of "test connection" is read by the tenant, who chose the host).
* Registry answers are parsed defensively: deeply nested JSON (`RecursionError`),
  an `expires_in` too large for a float, and a token that could not be sent in a
  header (control characters, CR/LF) are refused, never a crash.
* Calls made with `reuse_token=True` (tag lookups, once per deploy) reuse a bearer
  token until shortly before it expires (`expires_in`, at most 5 minutes), keyed by
  host, scope and a hash of the credentials, so a Docker Hub or GHCR lookup is one
  round trip instead of three. A 401 with a cached token drops it and runs the
  whole flow. This is a plain expiring map, not `libs.runtime.cache.BroadcastCache`:
  nobody broadcasts a token's revocation, the registry's 401 is the signal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from libs.oci.reference import registry_api_host
from libs.oci.registry.egress import EgressPolicy, EgressRefused, PolicyResolver
from libs.oci.registry.types import Credentials

USER_AGENT = "landfall-credentials/0.1"  # the default; the agent says who it is (`new_session`)
MAX_BODY = 4 * 1024 * 1024  # distribution refuses manifests above 4 MiB
MAX_TOKEN_BODY = 64 * 1024
TOKEN_CACHE_MAX = 10_000  # bearer tokens kept for tag lookups (expired ones are dropped first)
TOKEN_REUSE_MAX_SECONDS = 300.0  # a token is reused for at most this long, whatever it says
TOKEN_MARGIN_SECONDS = 10.0  # and dropped this long before it expires
DEFAULT_TOKEN_SECONDS = 60.0  # the spec's lifetime when the issuer does not say
POLICY_HINT = "the operator can list it in LANDFALL_REGISTRY_PRIVATE_HOSTS"
_SENDABLE_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what fits in an Authorization header


def basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
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


def _split_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def uses_plain_http(host: str, insecure: Iterable[str]) -> bool:
    """Whether `host` is listed as an insecure (plain HTTP) registry, by name or name:port."""
    listed = {entry.strip().lower() for entry in insecure if entry.strip()}
    host = host.lower()
    return host in listed or _split_port(host) in listed


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
        except (ValueError, RecursionError):
            return []
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if not isinstance(errors, list):
            return []
        return [str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code")]


def token_lifetime(expires_in: object) -> float:
    """Seconds a token may be reused: its `expires_in` (at most `TOKEN_REUSE_MAX_SECONDS`), else the default.

    Compared before any conversion: `float(10**400)` raises `OverflowError`, a
    comparison of an int with a float does not; NaN and booleans are no lifetime.
    """
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not expires_in > 0:
        return DEFAULT_TOKEN_SECONDS
    return TOKEN_REUSE_MAX_SECONDS if expires_in > TOKEN_REUSE_MAX_SECONDS else float(expires_in)


class AuthFlow:
    """Calls on one shared `aiohttp.ClientSession` (no cookies) for all registries of all tenants."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        insecure: Iterable[str],
        policy: EgressPolicy | None = None,
    ) -> None:
        self.session = session
        self.insecure = list(insecure)
        self.policy = policy if policy is not None else EgressPolicy()
        # Behind a proxy the proxy resolves names: `admit` resolves them here first (see `egress`).
        self._proxy_resolver = PolicyResolver(self.policy) if session.trust_env else None
        # (host, scope, sha256 of the credentials or "") -> (bearer token, monotonic time it is good until)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    def _remember(self, key: tuple[str, str, str], token: str, expires_in: float) -> None:
        now = time.monotonic()
        if len(self._tokens) >= TOKEN_CACHE_MAX:
            self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
        if len(self._tokens) < TOKEN_CACHE_MAX:
            self._tokens[key] = (token, now + min(expires_in, TOKEN_REUSE_MAX_SECONDS) - TOKEN_MARGIN_SECONDS)

    def base_url(self, host: str) -> str:
        return api_base_url(host, self.insecure)

    async def send(
        self, method: str, url: URL, headers: Mapping[str, str], *, host: str, limit: int = MAX_BODY
    ) -> Answer:
        """One request, no redirects followed; every failure is a `RegistryCallFailed` (module docstring)."""
        refused = RegistryCallFailed(
            "unreachable", f"refused by policy: registry calls may not reach {host}; {POLICY_HINT}"
        )
        try:
            await self.policy.admit(url, self._proxy_resolver)
            async with self.session.request(
                method, url, headers=dict(headers), allow_redirects=False
            ) as resp:
                if 300 <= resp.status < 400:
                    raise RegistryCallFailed(
                        "unreachable",
                        f"refused by policy: {host} answered with a redirect (HTTP {resp.status}); "
                        "registry calls do not follow redirects",
                    )
                body = b"" if method == "HEAD" else await resp.content.read(limit)
                return Answer(resp.status, resp.headers, body)
        except EgressRefused:
            raise refused from None
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
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, EgressRefused):
                raise refused from None
            raise RegistryCallFailed("unreachable", f"unreachable: cannot resolve {host}") from None
        except aiohttp.ClientConnectorError:
            raise RegistryCallFailed("unreachable", f"unreachable: cannot connect to {host}") from None
        except TimeoutError:
            raise RegistryCallFailed("unreachable", f"unreachable: {host} did not answer in time") from None
        except aiohttp.ClientError:
            raise RegistryCallFailed("unreachable", f"unreachable: the connection to {host} failed") from None

    async def _token(
        self, challenge: Challenge, credentials: Credentials | None, scope: str | None, *, host: str
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
        api_host = URL(self.base_url(host)).host or host
        if not self.policy.token_realm_allowed(api_host, url.host):
            raise RegistryCallFailed(
                "unreachable",
                f"refused by policy: the token realm of {host} is on another host ({url.host}); "
                "the operator can list it in LANDFALL_REGISTRY_TOKEN_HOSTS",
            )
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
            headers["Authorization"] = basic_header(credentials)
        answer = await self.send("GET", url, headers, host=realm_host, limit=MAX_TOKEN_BODY)
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
        except (ValueError, RecursionError):
            doc = None
        token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryCallFailed("unreachable", f"the token service of {host} sent no token")
        if _SENDABLE_TOKEN.fullmatch(token) is None:
            raise RegistryCallFailed("unreachable", f"the registry sent an unusable token ({host})")
        assert isinstance(doc, dict)
        return token, token_lifetime(doc.get("expires_in"))

    async def call(
        self,
        method: str,
        host: str,
        path: str,
        *,
        credentials: Credentials | None,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
        reuse_token: bool = False,
    ) -> Answer:
        """`method` on `path` of `host`'s registry API, through the auth flow (see module docstring)."""
        url = URL(self.base_url(host) + path, encoded=True)
        base_headers = dict(headers or {})
        who = (
            hashlib.sha256(basic_header(credentials).encode()).hexdigest() if credentials is not None else ""
        )
        key = (host, scope or "", who)
        cached = self._tokens.get(key) if reuse_token and scope else None
        if cached is not None and cached[1] > time.monotonic():
            answer = await self.send(
                method, url, {**base_headers, "Authorization": f"Bearer {cached[0]}"}, host=host
            )
            if answer.status != 401:
                return answer
            self._tokens.pop(key, None)  # revoked or expired early: the whole flow again
        answer = await self.send(method, url, base_headers, host=host)
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
            authorization = basic_header(credentials)
        else:
            return answer
        return await self.send(method, url, {**base_headers, "Authorization": authorization}, host=host)
