"""HTTP handlers: decode, call the domain modules, encode. Routes are declared in app.py."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import nats.errors
from aiohttp import web
from prometheus_client import Counter
from pydantic import BaseModel

from libs.contracts.ids import looks_like, new_id
from libs.contracts.messages import ComponentChanged, ComponentInfo, ImagePushed, TokenRevoked, utcnow
from libs.runtime.bus import Bus
from libs.runtime.errors import ProblemError, invalid, not_found
from libs.runtime.http import bearer_token, json_response, path_name, read_json
from services.webhook_gateway.auth import TokenAuthenticator, unauthorized
from services.webhook_gateway.barrier import BroadcastBarrier
from services.webhook_gateway.components import (
    ComponentDirectory,
    ComponentMissing,
    component_missing_problem,
)
from services.webhook_gateway.intake import component_reference, idempotency_key, resolve_image
from services.webhook_gateway.model import AcceptedRow, Binding, TokenRow
from services.webhook_gateway.models import (
    CiSnippets,
    DeployAccepted,
    DeployRequest,
    SigningSecretCreated,
    SigningStatus,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
)
from services.webhook_gateway.ratelimit import RateLimiter, retry_after_header
from services.webhook_gateway.repository import Repository
from services.webhook_gateway.settings import Settings
from services.webhook_gateway.signatures import SignatureError, generate_secret, verify
from services.webhook_gateway.snippets import render_all
from services.webhook_gateway.status import deployment_status
from services.webhook_gateway.tokens import generate_token, token_hash, token_prefix, well_formed
from services.webhook_gateway.vault import SigningSecretStore

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Everything the handlers use; built once by `app.create_app`."""

    settings: Settings
    bus: Bus
    repo: Repository
    auth: TokenAuthenticator
    directory: ComponentDirectory
    limiter: RateLimiter
    secrets: SigningSecretStore
    webhooks: Counter
    barrier: BroadcastBarrier = field(default_factory=BroadcastBarrier)


GATEWAY = web.AppKey("gateway", Gateway)


def _binding(request: web.Request) -> Binding:
    return Binding(path_name(request, "org"), path_name(request, "project"), path_name(request, "component"))


async def _existing_component(gw: Gateway, binding: Binding) -> ComponentInfo:
    try:
        return await gw.directory.info(binding)
    except ComponentMissing:
        raise not_found(f"component {binding}") from None


async def _sync_with_broadcasts(gw: Gateway) -> None:
    """A read barrier: apply every broadcast published before this request arrived.

    Revocations and component changes reach this replica as core NATS messages. A PING
    round trip on our connection is answered after every message the server queued for us
    before it, and nats-py schedules the subscription callbacks for those messages before it
    wakes the flush. So once the flush returns, a `TokenRevoked` published (and flushed) by
    the replica that answered the admin's DELETE has been applied here: "at once" holds for
    every request that arrives after the 204, at the cost of one NATS round trip.
    If the round trip fails, the caches are not trusted for this request. Concurrent requests
    share one round trip that was started after all of them arrived (`barrier.py`).
    """
    if not gw.bus.connected:
        return  # the caches are bypassed while disconnected anyway
    try:
        await gw.barrier.wait(lambda: gw.bus.nc.flush(timeout=1))
    except (nats.errors.Error, TimeoutError):
        gw.auth.clear()
        gw.directory.clear()


async def _ci_token(request: web.Request) -> tuple[Gateway, TokenRow]:
    """Authenticate the CI token and spend one request of its rate limit."""
    gw = request.app[GATEWAY]
    presented = bearer_token(request)
    if presented is not None and well_formed(presented):  # garbage costs no round trip
        await _sync_with_broadcasts(gw)
    token = await gw.auth.authenticate(presented)
    wait = gw.limiter.take(token.id)
    if wait is not None:
        log.info("rate limited", extra={"token_prefix": token.token_prefix, "component": str(token.binding)})
        raise ProblemError(
            429,
            "Too Many Requests",
            f"this CI token sent more than {gw.settings.rate_limit_per_second:g} requests per second",
            kind="rate-limited",
            headers={"Retry-After": retry_after_header(wait)},
        )
    return gw, token


async def _broadcast(gw: Gateway, subject: str, message: BaseModel) -> None:
    """Tell every replica now; the flush pushes it to the server before we answer the admin."""
    await gw.bus.publish(subject, message)
    with contextlib.suppress(nats.errors.Error, TimeoutError):
        await gw.bus.nc.flush(timeout=2)


async def _broadcast_component_changed(gw: Gateway, binding: Binding) -> None:
    gw.directory.forget(binding)
    await _broadcast(
        gw,
        gw.bus.subjects.components_changed,
        ComponentChanged(org=binding.org, project=binding.project, component=binding.component),
    )


# --- tokens (admin) ---------------------------------------------------------------------------


async def create_token(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    binding = _binding(request)
    body = await read_json(request, TokenCreate) if request.body_exists else TokenCreate()
    info = await _existing_component(gw, binding)
    token = generate_token()
    now = utcnow()
    row = TokenRow(
        id=new_id("tok"),
        binding=binding,
        name=body.name or "",
        token_prefix=token_prefix(token),
        token_sha256=token_hash(token),
        created_at=now,
        expires_at=now + timedelta(days=body.expires_in_days) if body.expires_in_days else None,
        revoked_at=None,
        last_used_at=None,
        component_id=info.component_id,
    )
    await gw.repo.insert_token(row)
    log.info(
        "ci token created",
        extra={"token_id": row.id, "token_prefix": row.token_prefix, "component": str(binding)},
    )
    return json_response(
        TokenCreated(
            id=row.id,
            name=row.name,
            token=token,
            token_prefix=row.token_prefix,
            created_at=row.created_at,
            expires_at=row.expires_at,
        ),
        status=201,
    )


async def list_tokens(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    binding = _binding(request)
    info = await _existing_component(gw, binding)
    rows = [r for r in await gw.repo.list_tokens(binding) if r.belongs_to(info.component_id)]
    return json_response(
        TokenList(
            items=[
                TokenOut(
                    id=r.id,
                    name=r.name,
                    token_prefix=r.token_prefix,
                    created_at=r.created_at,
                    expires_at=r.expires_at,
                    revoked_at=r.revoked_at,
                    last_used_at=r.last_used_at,
                )
                for r in rows
            ]
        )
    )


async def revoke_token(request: web.Request) -> web.Response:
    """Revoke in the database, drop locally, broadcast: works even while the orchestrator is down."""
    gw = request.app[GATEWAY]
    binding = _binding(request)
    token_id = request.match_info["id"]
    if not looks_like("tok", token_id):
        raise not_found("token")
    row = await gw.repo.revoke_token(binding, token_id)
    if row is None:
        raise not_found("token")
    gw.auth.revoked(token_id)
    await _broadcast(gw, gw.bus.subjects.tokens_revoked, TokenRevoked(token_id=token_id))
    log.info(
        "ci token revoked",
        extra={"token_id": token_id, "token_prefix": row.token_prefix, "component": str(binding)},
    )
    return web.Response(status=204)


# --- the webhook (CI token) -------------------------------------------------------------------


def _status_url(gw: Gateway, deployment_id: str) -> str:
    path = f"/v1/webhooks/deployments/{deployment_id}"
    return gw.settings.public_url.rstrip("/") + path if gw.settings.public_url else path


async def deploy(request: web.Request) -> web.Response:
    gw, token = await _ci_token(request)
    if request.content_type != "application/json":
        raise ProblemError(
            415,
            "Unsupported Media Type",
            "send the body as JSON with Content-Type: application/json",
            kind="unsupported-media-type",
        )
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    raw = await request.read()
    try:
        info = await gw.directory.info(token.binding)
    except ComponentMissing:
        raise component_missing_problem(token.binding) from None
    if not token.belongs_to(info.component_id):
        raise component_missing_problem(token.binding)  # it was deleted; this one only has its name
    signing = await gw.directory.signing(token.binding, info)
    webhook_id = None
    if signing.required and signing.key is not None:
        try:
            webhook_id = verify(
                signing.key,
                request.headers,
                raw,
                now=time.time(),
                tolerance=gw.settings.signature_tolerance_seconds,
            )
        except SignatureError as exc:
            gw.webhooks.labels(f"signature_{exc.failure}").inc()
            log.info(
                "signature refused",
                extra={
                    "failure": exc.failure,
                    "token_prefix": token.token_prefix,
                    "component": str(token.binding),
                },
            )
            raise unauthorized(exc.detail) from None
    body = await read_json(request, DeployRequest)
    ref = resolve_image(body, info)

    candidate = AcceptedRow(
        deployment_id=new_id("dep"),
        token_id=token.id,
        binding=token.binding,
        image=str(ref),
        idempotency_key=key,
        created_at=utcnow(),
    )

    async def publish(stored: AcceptedRow) -> None:
        """Store the request on JetStream; for a retry, the request it repeats (same id, one copy)."""
        event = ImagePushed(
            deployment_id=stored.deployment_id,
            org=stored.binding.org,
            project=stored.binding.project,
            component=stored.binding.component,
            image=stored.image,
            accepted_at=stored.created_at,
            token_prefix=token.token_prefix,
            idempotency_key=stored.idempotency_key,
        )
        await gw.bus.publish_durable(gw.bus.subjects.image_pushed, event, msg_id=stored.deployment_id)

    outcome, stored = await gw.repo.accept(
        candidate,
        idempotency_ttl=timedelta(hours=gw.settings.idempotency_ttl_hours),
        webhook_id=webhook_id,
        replay_window=timedelta(seconds=gw.settings.replay_window_seconds),
        publish=publish,
    )
    gw.webhooks.labels(outcome).inc()
    if outcome == "key_mismatch":
        raise ProblemError(
            422,
            "Idempotency Key Reused",
            f"Idempotency-Key was already used for a different image ({stored.deployment_id}); "
            "use a new key for a new request",
            kind="idempotency-key-reused",
            errors=[{"field": "Idempotency-Key", "message": "already used with a different request body"}],
        )
    if outcome == "webhook_replayed":
        raise ProblemError(
            409,
            "Replayed Webhook",
            "this webhook-id was already used; send each request with a new webhook-id",
            kind="webhook-replayed",
        )
    log.info(
        "image accepted" if outcome == "created" else "idempotent retry answered",
        extra={
            "deployment_id": stored.deployment_id,
            "component": str(token.binding),
            "image": stored.image,
            "token_prefix": token.token_prefix,
        },
    )
    return json_response(
        DeployAccepted(deployment_id=stored.deployment_id, status_url=_status_url(gw, stored.deployment_id)),
        status=202,
    )


async def get_deployment(request: web.Request) -> web.Response:
    gw, token = await _ci_token(request)
    deployment_id = request.match_info["id"]
    raw_wait = request.query.get("wait", "0")
    limit = gw.settings.long_poll_max_seconds
    if not raw_wait.isascii() or not raw_wait.isdigit() or int(raw_wait) > limit:
        raise invalid("wait", f"must be a whole number of seconds from 0 to {limit}")
    if not looks_like("dep", deployment_id):
        raise not_found("deployment")
    out = await deployment_status(
        bus=gw.bus, repo=gw.repo, binding=token.binding, deployment_id=deployment_id, wait=int(raw_wait)
    )
    return json_response(out)


# --- signing secrets (admin) ------------------------------------------------------------------


async def create_signing_secret(request: web.Request) -> web.Response:
    """Create (or rotate) the component's secret; from now on its webhooks must be signed."""
    gw = request.app[GATEWAY]
    binding = _binding(request)
    await _existing_component(gw, binding)
    secret = generate_secret()
    async with gw.repo.require_signing(binding) as created_at:
        await gw.secrets.put(binding, secret)
    await _broadcast_component_changed(gw, binding)
    log.info("signing secret created", extra={"component": str(binding)})
    return json_response(SigningSecretCreated(secret=secret, created_at=created_at), status=201)


async def get_signing_secret(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    binding = _binding(request)
    created_at = await gw.repo.signing_required(binding)
    return json_response(SigningStatus(required=created_at is not None, created_at=created_at))


async def delete_signing_secret(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    binding = _binding(request)
    async with gw.repo.stop_signing(binding) as existed:
        if not existed:
            raise not_found("signing secret")
        await gw.secrets.delete(binding)
    await _broadcast_component_changed(gw, binding)
    log.info("signing secret deleted", extra={"component": str(binding)})
    return web.Response(status=204)


# --- CI snippets (admin) ----------------------------------------------------------------------


async def ci_snippets(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    binding = _binding(request)
    info = await _existing_component(gw, binding)
    gateway_url = (gw.settings.public_url or str(request.url.origin())).rstrip("/")
    repository = component_reference(info).name
    rendered = render_all(gateway_url=gateway_url, repository=repository)
    return json_response(CiSnippets(gateway_url=gateway_url, image=f"{repository}:1.0.0", **rendered))
