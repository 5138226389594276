"""Who is calling, and whether they may: one guard around every route, declared in the route table.

Three kinds of caller (API.md, "Identity and roles"):

* the **platform** admin token (the operator: every org; the only one who creates orgs);
* **org API keys** (`lfk_…`) with a role, `viewer` < `developer` < `owner`;
* **CI tokens** (`lfci_…`): one component, the webhook only (the gateway checks them itself;
  everywhere else they are refused with 403).

Each route declares what it needs (`Need`): `none`, `ci`, `platform`, or a role. The guard
identifies the caller, then decides, in this order: no or bad credentials → 401; a key of
another org than the path's `{org}` → 404, exactly like an unknown object (an org must not
learn what another holds); a role too low → 403 naming the role needed. Handlers never check
by hand; those whose path names no org (`GET /v1/deployments/{id}`) scope their look-up with
`caller(request).scope`.

Keys are verified by `KeyDirectory`: a digest look-up (the orchestrator's own store, or the
orchestrator over the bus for other services) cached per replica in a `BroadcastCache` that the
`ApiKeyRevoked` broadcast empties on every replica; `Broadcasts.sync()` before trusting the cache
makes "revoked" true for the very next request. While NATS is away the cache is bypassed, so a
key that cannot be checked is refused with 503 + Retry-After, never trusted from a stale entry.

The guard also writes the audit trail (`AuditLog`): every change that succeeded (a non-GET
answered below 400) and every refused attempt by a recognisable caller (401 of a known but
revoked or expired key, 403, and 404 across orgs), with the request id.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from aiohttp import web
from pydantic import SecretStr

from libs.contracts import rpc
from libs.contracts.identity import ROLES, Actor, ApiKeyInfo, ApiKeyLookup, ApiKeyRevoked, Role, role_allows
from libs.contracts.tokens import API_KEY, CI_TOKEN, token_hash, token_prefix
from libs.runtime.audit import AuditSink
from libs.runtime.broadcasts import Broadcasts
from libs.runtime.bus import Bus, RpcFailed
from libs.runtime.cache import BroadcastCache
from libs.runtime.errors import DomainError, ProblemError
from libs.runtime.ratelimit import AddressLimiter

log = logging.getLogger(__name__)

Need = Literal["none", "ci", "platform", "viewer", "developer", "owner"]
NEEDS: Final[tuple[Need, ...]] = ("none", "ci", "platform", "viewer", "developer", "owner")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KeyLookup = Callable[[bytes], Awaitable[ApiKeyInfo | None]]

CHANGES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Caller:
    kind: Literal["platform", "api_key", "ci_token", "agent", "anonymous"]
    org: str | None = None
    role: Role | None = None
    id: str | None = None
    name: str | None = None
    component: str | None = None
    recognised: bool = True  # False: credentials nobody issued (not worth an audit item)

    @property
    def scope(self) -> str | None:
        """The one org this caller may see, or None for the platform (every org)."""
        return None if self.kind == "platform" else self.org

    def actor(self) -> Actor:
        return Actor(type=self.kind, id=self.id, name=self.name, component=self.component)


CALLER_KEY = web.RequestKey("landfall_caller", Caller)
AUDIT_TARGET_KEY = web.RequestKey("landfall_audit_target", str)
AUDIT_ORG_KEY = web.RequestKey("landfall_audit_org", str)
AUDIT_DETAIL_KEY = web.RequestKey("landfall_audit_detail", str)
AUDIT_UNCHANGED_KEY = web.RequestKey("landfall_audit_unchanged", bool)
REQUEST_ID_KEY = web.RequestKey("landfall_request_id", str)

PLATFORM: Final = Caller(kind="platform", name="platform admin")
ANONYMOUS: Final = Caller(kind="anonymous", recognised=False)


def caller(request: web.Request) -> Caller:
    """Who the guard found calling (ANONYMOUS on routes that need nothing)."""
    found = request.get(CALLER_KEY)
    return found if isinstance(found, Caller) else ANONYMOUS


def set_caller(request: web.Request, who: Caller) -> None:
    """For entry points that authenticate by other means (CI tokens, enrollment tokens)."""
    request[CALLER_KEY] = who


def audit_target(request: web.Request, target: str, *, org: str | None = None, detail: str = "") -> None:
    """Name what a change made (e.g. the new id) and, where the path names no org, whose it is;
    `detail` says what came of it (e.g. what a registry check found), never a secret."""
    request[AUDIT_TARGET_KEY] = target
    if org is not None:
        request[AUDIT_ORG_KEY] = org
    if detail:
        request[AUDIT_DETAIL_KEY] = detail


def audit_unchanged(request: web.Request) -> None:
    """This answer changed nothing (an idempotent retry repeating an earlier answer): no audit item,
    the earlier request has one already."""
    request[AUDIT_UNCHANGED_KEY] = True


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class Refused(ProblemError):
    """A refusal by the guard, with who was refused (for the audit trail)."""

    def __init__(
        self, status: int, title: str, detail: str, *, who: Caller, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, title, detail, headers=headers)
        self.who = who


def unauthorized(detail: str, who: Caller = ANONYMOUS, *, error: str | None = None) -> Refused:
    challenge = 'Bearer realm="landfall"' + (f', error="{error}"' if error else "")
    return Refused(401, "Unauthorized", detail, who=who, headers={"WWW-Authenticate": challenge})


def forbidden(detail: str, who: Caller) -> Refused:
    return Refused(403, "Forbidden", detail, who=who)


class KeyDirectory:
    """Org API keys by digest, cached per replica until a revocation broadcast or a reconnect."""

    def __init__(
        self,
        *,
        lookup: KeyLookup,
        broadcasts: Broadcasts | None,
        epoch: Callable[[], int | None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.lookup = lookup
        self.broadcasts = broadcasts
        self.now = now
        self.cache: BroadcastCache[bytes, ApiKeyInfo] = BroadcastCache(epoch=epoch)
        if broadcasts is not None:
            broadcasts.register(self.cache)

    def revoked(self, message: ApiKeyRevoked) -> None:
        self.cache.forget_where(lambda info: info.id == message.key_id)

    async def verify(self, key: str) -> Caller:
        if not API_KEY.well_formed(key):
            raise unauthorized("this is not a Landfall API key (check for typos)", error="invalid_token")
        digest = token_hash(key)
        if self.broadcasts is not None:
            await self.broadcasts.sync()
        info = self.cache.get(digest)
        if info is None:
            ticket = self.cache.ticket()
            info = await self.lookup(digest)
            if info is None:
                log.info("api key refused", extra={"result": "unknown", "key_prefix": token_prefix(key)})
                raise unauthorized("unknown API key", error="invalid_token")
            self.cache.put(digest, info, ticket)
        who = Caller(kind="api_key", org=info.org, role=info.role, id=info.id, name=info.name)
        if info.revoked:
            raise unauthorized(
                "this API key was revoked; ask an owner for a new one", who, error="invalid_token"
            )
        if info.expires_at is not None and info.expires_at <= self.now():
            raise unauthorized(
                f"this API key expired at {info.expires_at.isoformat()}; ask an owner for a new one",
                who,
                error="invalid_token",
            )
        return who


def bus_key_lookup(bus: Bus) -> KeyLookup:
    """Other services ask the orchestrator, which owns the keys (a missing answer is a 503)."""

    async def lookup(digest: bytes) -> ApiKeyInfo | None:
        try:
            return await bus.ask(rpc.APIKEY_LOOKUP, ApiKeyLookup(key_sha256=digest.hex()), timeout=2.0)
        except RpcFailed as exc:
            if exc.error.code == "not_found":
                return None
            raise

    return lookup


class Authenticator:
    def __init__(self, *, admin_token: SecretStr, keys: KeyDirectory | None = None) -> None:
        self.admin_token = admin_token
        self.keys = keys

    async def identify(self, request: web.Request) -> Caller:
        token = bearer_token(request)
        if token is None:
            return ANONYMOUS
        if not token.isascii():  # aiohttp hands latin-1 header bytes over as surrogates: encode() raised
            raise unauthorized("not a Landfall credential: credentials are ASCII")
        expected = self.admin_token.get_secret_value()
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return PLATFORM
        if API_KEY.looks_like(token):
            if self.keys is None:
                raise unauthorized("this service does not accept API keys yet")
            return await self.keys.verify(token)
        if CI_TOKEN.looks_like(token):
            return Caller(kind="ci_token", name=token_prefix(token), recognised=False)
        raise unauthorized("not a Landfall credential: send an org API key (lfk_…) or the admin token")


def decide(who: Caller, need: Need, path_org: str | None) -> None:
    """Raise the refusal (401, 404 across orgs, 403) or return: the order of API.md."""
    if need in ("none", "ci"):
        return
    if who.kind == "anonymous":
        raise unauthorized("send an org API key (lfk_…) or the admin token as 'Authorization: Bearer …'", who)
    if who.kind == "platform":
        return
    if who.kind == "ci_token":
        raise forbidden(
            "a CI token reaches only the webhook (POST /v1/webhooks/deploy,"
            " GET /v1/webhooks/deployments/{id}); use an org API key (lfk_…) for this",
            who,
        )
    if path_org is not None and path_org != who.org:
        raise Refused(404, "Not Found", f"org {path_org[:50]!r} does not exist", who=who)
    if need == "platform":
        raise forbidden("only the platform admin token may do this", who)
    assert who.role is not None
    assert need in ROLES
    needed: Role = need
    if not role_allows(who.role, needed):
        raise forbidden(
            f"this needs the {needed} role or higher; this key ({who.name}) has the {who.role} role:"
            " ask an owner of the org for a key with that role",
            who,
        )


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
# Refused credentials per client address (libs/runtime/ratelimit.py): checked before a presented
# credential is looked up, spent when it was refused (401), so guessing keys costs nothing.
PREAUTH = web.AppKey("preauth_limiter", AddressLimiter)
AUDIT = web.AppKey("audit_log", AuditSink)


def _audit(
    request: web.Request,
    *,
    who: Caller,
    action: str,
    outcome: Literal["ok", "refused"],
    status: int,
    detail: str = "",
) -> None:
    audit = request.app.get(AUDIT)
    if audit is None:
        return
    org = request.get(AUDIT_ORG_KEY) or request.match_info.get("org")
    if outcome == "refused" and who.org is not None:
        org = who.org  # an org's trail shows what its own keys tried, not other orgs' probes
    if not org:
        return
    audit.record(
        org=org,
        actor=who.actor(),
        action=action,
        target=str(request.get(AUDIT_TARGET_KEY) or request.path),
        outcome=outcome,
        status=status,
        request_id=request.get(REQUEST_ID_KEY),
        detail=detail,
    )


def guard(handler: Handler, *, need: Need, action: str) -> Handler:
    """Wrap a route's handler: identify, decide, run, and write the audit trail."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        authenticator = request.app[AUTHENTICATOR]
        path_org = request.match_info.get("org")
        try:
            if need not in ("none", "ci"):
                presented = bearer_token(request) is not None
                limiter = request.app.get(PREAUTH) if presented else None
                if limiter is not None:
                    limiter.check(request)
                try:
                    who = await authenticator.identify(request)
                except Refused as exc:
                    if limiter is not None and exc.status == 401:
                        limiter.refused(request)
                    raise
                decide(who, need, path_org)
                set_caller(request, who)
            response = await handler(request)
        except Refused as exc:
            if exc.who.recognised:
                _audit(
                    request,
                    who=exc.who,
                    action=action,
                    outcome="refused",
                    status=exc.status,
                    detail=exc.detail,
                )
            raise
        except (ProblemError, DomainError) as exc:
            status = exc.status
            who = caller(request)
            if status == 403 and who.recognised:
                _audit(request, who=who, action=action, outcome="refused", status=status, detail=exc.detail)
            raise
        if request.method in CHANGES and response.status < 400 and not request.get(AUDIT_UNCHANGED_KEY):
            _audit(
                request,
                who=caller(request),
                action=action,
                outcome="ok",
                status=response.status,
                detail=request.get(AUDIT_DETAIL_KEY, ""),
            )
        return response

    return guarded


def default_action(method: str, path: str) -> str:
    """`POST /v1/orgs/{org}/registries/{id}/test` → `registries.test`-like names when a route names none."""
    words = [p for p in path.split("/") if p and not p.startswith("{") and p != "v1" and p != "orgs"]
    verb = {"POST": "create", "PUT": "replace", "PATCH": "update", "DELETE": "delete"}.get(method, "read")
    return ".".join([*words[-2:], verb]) if words else verb
