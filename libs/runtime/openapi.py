"""The OpenAPI 3 document every service serves at `/openapi.json`, built from its route table.

Each operation says who may call it: `security` (the admin token, an org API key, or a CI
token) and `x-landfall-auth` (`none`, `ci`, `platform`, or the least role: `viewer`,
`developer`, `owner`), so that clients, and the tenancy matrix in the tests, can read the
rules from the document instead of a copy of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

NAME_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
PROBLEM_JSON = "application/problem+json"


@dataclass
class RouteDoc:
    method: str
    path: str
    summary: str
    auth: str
    request: type[BaseModel] | None
    responses: dict[int, type[BaseModel] | None]
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    action: str = ""


def openapi_document(routes: Sequence[RouteDoc], *, title: str, version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Problem": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
            "required": ["type", "title", "status"],
        }
    }

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    paths: dict[str, Any] = {}
    for r in routes:
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": f"^{NAME_PATTERN}$", "maxLength": 40}
                if not name.endswith("id")
                else {"type": "string", "maxLength": 64},
            }
            for name in re.findall(r"{(\w+)}", r.path)
        ]
        params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in r.query.items()]
        op: dict[str, Any] = {"summary": r.summary, "parameters": params, "responses": {}}
        op["x-landfall-auth"] = r.auth
        op["x-landfall-action"] = r.action
        if r.auth == "ci":
            op["security"] = [{"ciToken": []}]
        elif r.auth == "platform":
            op["security"] = [{"adminToken": []}]
        elif r.auth != "none":
            op["security"] = [{"apiKey": []}, {"adminToken": []}]
            op["description"] = (
                f"Needs an org API key with the {r.auth} role (or higher), or the admin token."
            )
        if r.request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(r.request)}},
            }
        for status, model in r.responses.items():
            content = {"application/json": {"schema": ref(model)}} if model is not None else None
            op["responses"][str(status)] = {
                "description": "success",
                **({"content": content} if content else {}),
            }
        for status in (
            ([400, 413, 415, 422] if r.request else [])
            + ([422] if r.query else [])  # a query parameter out of its range or of the wrong type
            + ([401] if r.auth != "none" else [])
            + [403, 404, 409, 429, 503]
        ):
            op["responses"].setdefault(str(status), {"description": "problem", "content": problem})
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "the platform admin token"},
                "apiKey": {"type": "http", "scheme": "bearer", "description": "an org API key (lfk_…)"},
                "ciToken": {"type": "http", "scheme": "bearer", "description": "a CI token (lfci_…)"},
            },
        },
    }
