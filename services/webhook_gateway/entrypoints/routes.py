"""The gateway's HTTP API: the route table and thin handlers (decode, call a use case, encode).

The table says who may call each route (API.md, "Identity and roles"): reading a
component's CI tokens, signing state and snippets needs a viewer of the org,
creating and revoking tokens and signing secrets a developer (or the platform
admin token); the shared guard (`libs.runtime.access`) checks it, refuses another
org's key with the 404 of an unknown component, and writes every change to the
one audit trail. A CI token reaches only the webhook routes (`auth="ci"`).

Those are wrapped by `_ci`: it admits the CI token, tells the guard who called
(`set_caller`: a `ci_token` actor with its id, name and component, so the deploy
and a refused image are audited as that token's), and renders what only HTTP
knows, `Unauthenticated` as 401 with `WWW-Authenticate` (audited as refused when
the token is one we issued: revoked, expired, or a bad signature) and
`RateLimited` as 429 with `Retry-After`. Every other refusal is a domain error
that the shared middleware renders. The webhook's order of checks is part of its
contract: token, media type, Idempotency-Key, component and signature (over the
raw body), then the body itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from libs.contracts.ids import looks_like
from libs.runtime.access import (
    ANONYMOUS,
    PREAUTH,
    Caller,
    Need,
    audit_target,
    audit_unchanged,
    set_caller,
    unauthorized,
)
from libs.runtime.errors import NotFound, ProblemError
from libs.runtime.http import Api, bearer_token, json_response, path_name, query_int, read_json, require_json
from libs.runtime.ratelimit import retry_after_header, too_many
from services.webhook_gateway.domain.errors import RateLimited, Unauthenticated
from services.webhook_gateway.domain.images import idempotency_key
from services.webhook_gateway.domain.polls import PollSlots, TooManyPolls
from services.webhook_gateway.domain.records import AcceptedRow, Binding, TokenRow
from services.webhook_gateway.schemas import (
    CiSnippets,
    DeployAccepted,
    DeploymentOut,
    DeployRequest,
    SigningSecretCreated,
    SigningStatus,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
)
from services.webhook_gateway.settings import Settings
from services.webhook_gateway.usecases import Gateway

GATEWAY = web.AppKey("gateway", Gateway)
SETTINGS = web.AppKey("gateway_settings", Settings)
POLLS = web.AppKey("gateway_long_polls", PollSlots)
COMPONENT = "/v1/orgs/{org}/projects/{project}/components/{component}"
GONE_CHECK_SECONDS = 0.25
T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CiHandler = Callable[[web.Request, Gateway, TokenRow], Awaitable[web.StreamResponse]]
Responses = dict[int, type[BaseModel] | None]
Query = dict[str, dict[str, Any]]


def ci_caller(token: TokenRow) -> Caller:
    """The audit trail's actor for a CI token: its id, its name (or prefix) and its one component."""
    _, project, component = token.binding.parts()
    return Caller(
        kind="ci_token",
        org=token.binding.org,
        id=token.id,
        name=token.name or token.token_prefix,
        component=f"{project}/{component}",
    )


def _ci(handler: CiHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        gw = request.app[GATEWAY]
        presented = bearer_token(request)
        limiter = request.app[PREAUTH] if presented is not None else None
        if limiter is not None:  # before the token is looked up: guessing costs us nothing
            limiter.check(request)
        try:
            token = await gw.access.admit(presented)
            set_caller(request, ci_caller(token))
            return await handler(request, gw, token)
        except Unauthenticated as exc:
            if limiter is not None:
                limiter.refused(request)
            who = ANONYMOUS if exc.token is None else ci_caller(exc.token)
            raise unauthorized(exc.detail, who, error="invalid_token") from None
        except RateLimited as exc:
            raise ProblemError(
                429,
                "Too Many Requests",
                exc.detail,
                kind="rate-limited",
                headers={"Retry-After": retry_after_header(exc.wait)},
            ) from None

    wrapped.__doc__ = handler.__doc__  # the route's summary
    return wrapped


def _binding(request: web.Request) -> Binding:
    return Binding(path_name(request, "org"), path_name(request, "project"), path_name(request, "component"))


# --- the webhook (CI token) -------------------------------------------------------------------


def _status_url(settings: Settings, deployment_id: str) -> str:
    path = f"/v1/webhooks/deployments/{deployment_id}"
    return settings.public_url.rstrip("/") + path if settings.public_url else path


async def deploy(request: web.Request, gw: Gateway, token: TokenRow) -> web.Response:
    """deploy an image of the token's component (exactly one of image, tag, digest)"""
    require_json(request)
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    authorised = await gw.intake.authorise(token, body=await request.read(), headers=request.headers)
    body = await read_json(request, DeployRequest)
    accepted = await gw.intake.accept(
        authorised, idempotency_key=key, image=body.image, tag=body.tag, digest=body.digest
    )
    stored = accepted.row
    audit_target(request, stored.deployment_id, org=token.binding.org)
    if accepted.repeated:
        audit_unchanged(request)  # the first answer's request has the audit item
    url = _status_url(request.app[SETTINGS], stored.deployment_id)
    return json_response(DeployAccepted(deployment_id=stored.deployment_id, status_url=url), status=202)


async def _unless_gone(request: web.Request, poll: Awaitable[T]) -> T:
    """`poll`'s result; cancelled when the client hangs up (aiohttp runs on after a disconnect,
    and the poll would hold its slot and subscription to its deadline)."""
    task = asyncio.ensure_future(poll)
    try:
        while not task.done():
            transport = request.transport
            if transport is None or transport.is_closing():
                task.cancel()
                raise web.HTTPBadRequest(text="the client went away")  # nobody reads this answer
            await asyncio.wait([task], timeout=GONE_CHECK_SECONDS)
        return task.result()
    finally:
        if not task.done():
            task.cancel()


async def get_deployment(request: web.Request, gw: Gateway, token: TokenRow) -> web.Response:
    """a deployment of the token's component; ?wait=N long-polls until it is final"""
    deployment_id = request.match_info["id"]
    wait = query_int(
        request, "wait", default=0, minimum=0, maximum=request.app[SETTINGS].long_poll_max_seconds
    )
    if not looks_like("dep", deployment_id):
        raise NotFound("deployment")
    if wait == 0:
        found = await gw.status.get(token.binding, deployment_id, wait=0)
    else:
        try:
            with request.app[POLLS].slot(token.id):
                found = await _unless_gone(request, gw.status.get(token.binding, deployment_id, wait=wait))
        except TooManyPolls as exc:
            raise too_many(exc.detail, 1.0) from None
    return json_response(
        DeploymentOut.pending(found) if isinstance(found, AcceptedRow) else DeploymentOut.from_view(found)
    )


# --- tokens (org keys: developer; reading them, viewer) ---------------------------------------


async def create_token(request: web.Request) -> web.Response:
    """create a CI token for the component (the token is shown once)"""
    gw = request.app[GATEWAY]
    binding = _binding(request)
    body = await read_json(request, TokenCreate) if request.body_exists else TokenCreate()
    new = await gw.tokens.create(binding, name=body.name, expires_in_days=body.expires_in_days)
    audit_target(request, new.row.id)
    return json_response(TokenCreated.from_row(new.row, new.token), status=201)


async def list_tokens(request: web.Request) -> web.Response:
    """list the component's CI tokens (never the token itself)"""
    rows = await request.app[GATEWAY].tokens.list(_binding(request))
    return json_response(TokenList(items=[TokenOut.from_row(r) for r in rows]))


async def revoke_token(request: web.Request) -> web.Response:
    """revoke a CI token; it stops working at once on every replica"""
    token_id = request.match_info["id"]
    await request.app[GATEWAY].tokens.revoke(_binding(request), token_id)
    audit_target(request, token_id)
    return web.Response(status=204)


# --- signing secrets (org keys: developer; reading them, viewer) ------------------------------


async def create_signing_secret(request: web.Request) -> web.Response:
    """create or rotate the signing secret (shown once); webhooks must then be signed"""
    secret, created_at = await request.app[GATEWAY].signing.create(_binding(request))
    return json_response(SigningSecretCreated(secret=secret, created_at=created_at), status=201)


async def get_signing_secret(request: web.Request) -> web.Response:
    """whether the component's webhooks must be signed"""
    created_at = await request.app[GATEWAY].signing.required_since(_binding(request))
    return json_response(SigningStatus(required=created_at is not None, created_at=created_at))


async def delete_signing_secret(request: web.Request) -> web.Response:
    """stop requiring signatures and delete the secret"""
    await request.app[GATEWAY].signing.delete(_binding(request))
    return web.Response(status=204)


# --- CI snippets (org keys: viewer) -----------------------------------------------------------


async def ci_snippets(request: web.Request) -> web.Response:
    """ready-to-paste CI snippets: bash/curl, GitHub Actions, GitLab CI"""
    gw = request.app[GATEWAY]
    gateway_url, image, rendered = await gw.snippets.render(
        _binding(request), origin=str(request.url.origin())
    )
    return json_response(CiSnippets(gateway_url=gateway_url, image=image, **rendered))


def _summary(handler: Callable[..., object]) -> str:
    assert handler.__doc__, f"{handler.__name__} needs a docstring: it is the route's summary"
    return handler.__doc__


# --- the table --------------------------------------------------------------------------------


def add_routes(api: Api, settings: Settings) -> None:
    """Declare every route (the handlers read `app[GATEWAY]` and `app[SETTINGS]`, set by the app).

    A route's summary in the OpenAPI document is its handler's docstring.
    """

    def declare(
        method: str,
        path: str,
        handler: Handler,
        need: Need,
        action: str,
        responses: Responses,
        request: type[BaseModel] | None = None,
        query: Query | None = None,
    ) -> None:
        summary = _summary(handler)
        api.route(
            method,
            path,
            handler,
            summary=summary,
            auth=need,
            action=action,
            request=request,
            responses=responses,
            query=query,
        )

    api.app[POLLS] = PollSlots(settings.long_polls_per_token)
    tokens, secret = COMPONENT + "/tokens", COMPONENT + "/signing-secret"
    declare("POST", tokens, create_token, "developer", "citoken.create", {201: TokenCreated}, TokenCreate)
    declare("GET", tokens, list_tokens, "viewer", "citoken.list", {200: TokenList})
    declare("DELETE", tokens + "/{id}", revoke_token, "developer", "citoken.revoke", {204: None})
    created: Responses = {201: SigningSecretCreated}
    declare("POST", secret, create_signing_secret, "developer", "signing_secret.create", created)
    declare("GET", secret, get_signing_secret, "viewer", "signing_secret.get", {200: SigningStatus})
    declare("DELETE", secret, delete_signing_secret, "developer", "signing_secret.delete", {204: None})
    declare("GET", COMPONENT + "/ci-snippets", ci_snippets, "viewer", "ci_snippets.get", {200: CiSnippets})

    wait = {"wait": {"type": "integer", "minimum": 0, "maximum": settings.long_poll_max_seconds}}
    hook = "/v1/webhooks"
    declare(
        "POST", hook + "/deploy", _ci(deploy), "ci", "deployment.create", {202: DeployAccepted}, DeployRequest
    )
    declare(
        "GET",
        hook + "/deployments/{id}",
        _ci(get_deployment),
        "ci",
        "deployment.get",
        {200: DeploymentOut},
        query=wait,
    )
