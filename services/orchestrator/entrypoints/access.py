"""HTTP handlers for org API keys and the org's audit trail.

Who may call them is declared in the route table (owner for keys, viewer for the
audit); the guard has refused everyone else before these run. The query of the
audit page is checked here: a bad `limit` or `cursor` is a 422, never a 500.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from libs.contracts.identity import AuditEvent
from libs.runtime.access import audit_target
from libs.runtime.errors import Invalid
from libs.runtime.http import json_response, path_name, read_json
from services.orchestrator.domain.access import ApiKey, AuditFilter, decode_cursor
from services.orchestrator.entrypoints import USECASES
from services.orchestrator.entrypoints.components import DEFAULT_LIMIT, MAX_LIMIT, query_limit
from services.orchestrator.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    AuditItem,
    AuditList,
)

FILTER_MAX = 200

AUDIT_QUERY: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    "cursor": {"type": "string", "description": "next_cursor of the previous page"},
    "action": {"type": "string", "maxLength": FILTER_MAX, "description": "only this action"},
    "actor_id": {
        "type": "string",
        "maxLength": FILTER_MAX,
        "description": "only this actor (a key or token id)",
    },
}


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)


def audit_item(event: AuditEvent) -> AuditItem:
    """The fields of the event that `AuditItem` shows (not its org: the path names it)."""
    return AuditItem.model_validate(event.model_dump())


async def create_api_key(request: web.Request) -> web.Response:
    """create an org API key with a role; the key is shown only in this answer"""
    org = path_name(request, "org")
    body = await read_json(request, ApiKeyCreate)
    key, secret = await request.app[USECASES].api_keys.create(
        org, name=body.name, role=body.role, expires_in_days=body.expires_in_days
    )
    audit_target(request, key.id)
    created = ApiKeyCreated.model_validate({**api_key_out(key).model_dump(), "key": secret})
    return json_response(created, 201)


async def list_api_keys(request: web.Request) -> web.Response:
    """the org's API keys, newest first (never the key itself)"""
    keys = await request.app[USECASES].api_keys.of_org(path_name(request, "org"))
    return json_response(ApiKeyList(items=[api_key_out(k) for k in keys]))


async def revoke_api_key(request: web.Request) -> web.Response:
    """revoke an API key: it stops working at once on every service and replica"""
    key = await request.app[USECASES].api_keys.revoke(path_name(request, "org"), request.match_info["id"])
    audit_target(request, key.id)
    return web.Response(status=204)


def _filter(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not 0 < len(value) <= FILTER_MAX:
        raise Invalid(name, f"from 1 to {FILTER_MAX} characters")
    return value


def audit_filter(request: web.Request) -> AuditFilter:
    cursor = request.query.get("cursor")
    return AuditFilter(
        org=path_name(request, "org"),
        limit=query_limit(request),
        before=decode_cursor(cursor) if cursor else None,
        action=_filter(request, "action"),
        actor_id=_filter(request, "actor_id"),
    )


async def org_audit(request: web.Request) -> web.Response:
    """the org's audit trail from every service, newest first: every change and every refused attempt"""
    events, cursor = await request.app[USECASES].audit.page(audit_filter(request))
    return json_response(AuditList(items=[audit_item(e) for e in events], next_cursor=cursor))
