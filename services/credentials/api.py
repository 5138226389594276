"""HTTP handlers: decode, call `Registries`, encode. Routes are declared in app.py.

Every route needs the admin token (checked by `Api.route`), so the actor in the
audit trail is "admin". A registry of another org, or an id that is not a
registry id, is a 404.
"""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from libs.runtime.errors import ProblemError, invalid
from libs.runtime.http import json_response, path_name, read_json
from services.credentials.models import (
    AuditEventOut,
    AuditList,
    RegistryCreate,
    RegistryList,
    RegistryOut,
    RegistryUpdate,
    TestRequest,
    TestResult,
)
from services.credentials.registries import Registries, rule_problem
from services.credentials.repository import AuditRow, RegistryRow
from services.credentials.rules import RuleViolation, pydantic_errors

REGISTRIES = web.AppKey("registries", Registries)
ADMIN_ACTOR = "admin"
AUDIT_PAGE_MAX = 500

M = TypeVar("M", bound=BaseModel)


class _AnyObject(BaseModel):
    """Only checks that the body is a JSON object (content type, syntax): see `_read`."""


async def _read(request: web.Request, model: type[M]) -> M:
    """Like `read_json`, but errors name API fields (`auth.password`, not `auth.basic.password`)."""
    await read_json(request, _AnyObject)  # 415 / 400 / 422-not-an-object, with the shared wording
    data = json.loads(await request.read())  # aiohttp keeps the body; it is valid JSON by now
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise rule_problem(RuleViolation(pydantic_errors(exc))) from None


def _out(row: RegistryRow) -> RegistryOut:
    return RegistryOut(
        id=row.id,
        display_name=row.display_name,
        host=row.host,
        auth_type=row.auth_type,
        username=row.username,
        vendor=row.vendor,
        warnings=row.warnings,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _event(row: AuditRow) -> AuditEventOut:
    return AuditEventOut(
        id=row.id,
        org=row.org,
        registry_id=row.registry_id,
        action=row.action,
        actor=row.actor,
        outcome=row.outcome,
        detail=row.detail,
        at=row.at,
    )


async def create_registry(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    body = await _read(request, RegistryCreate)
    row = await request.app[REGISTRIES].create(org, body, actor=ADMIN_ACTOR)
    return json_response(_out(row), status=201)


async def list_registries(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    rows = await request.app[REGISTRIES].list_registries(org)
    return json_response(RegistryList(items=[_out(r) for r in rows]))


async def get_registry(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    row = await request.app[REGISTRIES].get(org, request.match_info["id"])
    return json_response(_out(row))


async def update_registry(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    registry_id = request.match_info["id"]
    await request.app[REGISTRIES].get(org, registry_id)  # 404 before 422 for an unknown registry
    body = await _read(request, RegistryUpdate)
    row = await request.app[REGISTRIES].update(org, registry_id, body, actor=ADMIN_ACTOR)
    return json_response(_out(row))


async def delete_registry(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    await request.app[REGISTRIES].delete(org, request.match_info["id"], actor=ADMIN_ACTOR)
    return web.Response(status=204)


async def test_registry(request: web.Request) -> web.Response:
    org = path_name(request, "org")
    registry_id = request.match_info["id"]
    await request.app[REGISTRIES].get(org, registry_id)
    # The body is optional: `POST .../test` with nothing checks the login only.
    body = await _read(request, TestRequest) if request.body_exists else TestRequest()
    result = await request.app[REGISTRIES].test(org, registry_id, body.repository, actor=ADMIN_ACTOR)
    return json_response(TestResult(ok=result.ok, detail=result.detail))


_EVENT_ID_MAX = 2**63 - 1  # audit event ids are a PostgreSQL bigint


def _page(request: web.Request) -> tuple[int | None, int]:
    try:
        before = int(request.query["before"]) if "before" in request.query else None
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise ProblemError(
            422,
            "Validation Failed",
            "before and limit must be integers",
            kind="validation-failed",
            errors=[{"field": "query", "message": "before and limit must be integers"}],
        ) from None
    if before is not None and not 0 < before <= _EVENT_ID_MAX:
        # Found by `make chaos`: a value beyond the database's bigint was a 500.
        raise invalid("before", f"an event id: a whole number from 1 to {_EVENT_ID_MAX}")
    return before, max(1, min(limit, AUDIT_PAGE_MAX))


async def _audit(request: web.Request, registry_id: str | None) -> web.Response:
    org = path_name(request, "org")
    before, limit = _page(request)
    rows = await request.app[REGISTRIES].audit_events(
        org, registry_id=registry_id, before=before, limit=limit
    )
    next_before = rows[-1].id if len(rows) == limit else None
    return json_response(AuditList(items=[_event(r) for r in rows], next_before=next_before))


async def registry_audit(request: web.Request) -> web.Response:
    return await _audit(request, request.match_info["id"])


async def org_audit(request: web.Request) -> web.Response:
    return await _audit(request, None)
