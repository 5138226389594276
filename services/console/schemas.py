"""The console's forms, turned into the public API's request bodies.

A form field is named by the API's own JSON path (`display_name`, `auth.host`, `auth.password`),
so an API 422 naming `auth.password` lands beside that very field with no mapping table. Values
are checked here only where a form cannot express the API's type (a port is a number); the rest is
the API's to judge, in its own words, so the console never disagrees with the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.console.clients.landfall import ApiProblem

REGISTRY_FIELDS = (
    "display_name",
    "auth.type",
    "auth.host",
    "auth.username",
    "auth.password",
    "auth.config",
    "auth.vendor",
)
COMPONENT_FIELDS = ("project", "name", "type", "registry_id", "image", "port", "schedule", "timezone")


def text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def registry_body(form: Mapping[str, Any]) -> dict[str, Any]:
    kind = text(form, "auth.type")
    auth: dict[str, Any] = {"type": kind}
    if kind in ("anonymous", "basic", "vendor"):
        auth["host"] = text(form, "auth.host")
    if kind == "basic":
        auth["username"] = text(form, "auth.username")
        password = form.get("auth.password", "")
        auth["password"] = password if isinstance(password, str) else ""
    if kind == "docker-config":
        auth["config"] = text(form, "auth.config")
    if kind == "vendor":
        auth["vendor"] = text(form, "auth.vendor")
    return {"display_name": text(form, "display_name"), "auth": auth}


def whole_number(form: Mapping[str, Any], name: str) -> int | None:
    raw = text(form, name)
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise ApiProblem(
            422,
            "Validation Failed",
            f"{name}: must be a whole number",
            [{"field": name, "message": "must be a whole number"}],
        )
    return int(raw)


def component_body(form: Mapping[str, Any]) -> dict[str, Any]:
    kind = text(form, "type")
    body: dict[str, Any] = {
        "name": text(form, "name"),
        "type": kind,
        "registry_id": text(form, "registry_id"),
        "image": text(form, "image"),
    }
    port = whole_number(form, "port")
    if port is not None and kind in ("service", "web-application"):
        body["port"] = port
    if kind == "scheduled-task":
        body["schedule"] = text(form, "schedule")
        body["timezone"] = text(form, "timezone")
    return body


def deploy_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """ "Deploy": an image (full reference) or a tag; without either, the component's image."""
    body: dict[str, Any] = {}
    if environment := text(form, "environment"):
        body["environment"] = environment
    image, tag = text(form, "image"), text(form, "tag")
    if image:
        body["image"] = image
    elif tag:
        body["tag"] = tag
    return body


def execution_body(form: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments one per line (a line may hold spaces: it is one argument)."""
    body: dict[str, Any] = {"args": [line for line in text(form, "args").splitlines() if line.strip()]}
    if environment := text(form, "environment"):
        body["environment"] = environment
    return body


def token_body(form: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if name := text(form, "name"):
        body["name"] = name
    days = whole_number(form, "expires_in_days")
    if days is not None:
        body["expires_in_days"] = days
    return body


def api_key_body(form: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"name": text(form, "name"), "role": text(form, "role")}
    days = whole_number(form, "expires_in_days")
    if days is not None:
        body["expires_in_days"] = days
    return body


def environment_body(form: Mapping[str, Any]) -> dict[str, Any]:
    order = whole_number(form, "order")
    return {
        "name": text(form, "name"),
        "dataplane_id": text(form, "dataplane_id"),
        "order": order if order is not None else 0,
    }
