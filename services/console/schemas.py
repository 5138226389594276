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


def form_values(form: Mapping[str, Any], *, hide: tuple[str, ...] = ()) -> dict[str, str]:
    """What a form sent, to fill it again after a refusal: never its CSRF token nor the `hide` fields
    (a password or a secret is typed again, not echoed into the page)."""
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf" and k not in hide}


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


CONFIG_FIELDS = (
    "replicas",
    "resources.requests.cpu",
    "resources.requests.memory",
    "resources.limits.cpu",
    "resources.limits.memory",
    "env",
    "secrets",
    "autoscaling",
    "autoscaling.min_replicas",
    "autoscaling.max_replicas",
    "autoscaling.target_cpu_percent",
    "ingress.host",
    "auto_rollback",
)


def _pairs(form: Mapping[str, Any], name: str) -> dict[str, str]:
    """`NAME=value` lines (a value may hold `=`); a line without `=` is refused, naming the field."""
    out: dict[str, str] = {}
    for number, line in enumerate(text(form, name).splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            message = f"line {number}: write NAME=value"
            raise ApiProblem(
                422, "Validation Failed", f"{name}: {message}", [{"field": name, "message": message}]
            )
        out[key.strip()] = value
    return out


def config_body(form: Any, current: Mapping[str, Any], *, component_type: str) -> dict[str, Any]:
    """A `PUT …/config` body: the current config (so fields this form does not show, like probes,
    are kept: a PUT replaces all but secrets) with what the form says. Secrets are write-only:
    lines set them, ticked names delete them, the rest are kept."""
    body = {k: v for k, v in current.items() if k not in ("version", "secret_names", "deployment_id")}
    long_running = component_type in ("service", "web-application")
    if long_running:
        body["replicas"] = whole_number(form, "replicas")
        scaling = {
            k: whole_number(form, f"autoscaling.{k}")
            for k in ("min_replicas", "max_replicas", "target_cpu_percent")
        }
        body["autoscaling"] = scaling if any(v is not None for v in scaling.values()) else None
    resources: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        amounts = {k: text(form, f"resources.{part}.{k}") for k in ("cpu", "memory")}
        if any(amounts.values()):
            resources[part] = {k: v for k, v in amounts.items() if v}
    body["resources"] = resources or None
    body["env"] = _pairs(form, "env")
    secrets: dict[str, str | None] = dict(_pairs(form, "secrets"))
    for name in form.getall("delete_secret", []) if hasattr(form, "getall") else []:
        if isinstance(name, str) and name not in secrets:
            secrets[name] = None
    body["secrets"] = secrets
    if component_type == "web-application":
        host = text(form, "ingress.host")
        ingress = current.get("ingress") or {}
        body["ingress"] = {**ingress, "host": host} if host else None
    body["auto_rollback"] = form.get("auto_rollback") == "on"
    return body


def config_values(config: Mapping[str, Any]) -> dict[str, str]:
    """The form's fields from a stored config (never a secret: only names are stored here)."""
    values: dict[str, str] = {}
    if config.get("replicas") is not None:
        values["replicas"] = str(config["replicas"])
    for part, amounts in (config.get("resources") or {}).items():
        for k, v in (amounts or {}).items():
            if v:
                values[f"resources.{part}.{k}"] = str(v)
    values["env"] = "\n".join(f"{k}={v}" for k, v in (config.get("env") or {}).items())
    for k, v in (config.get("autoscaling") or {}).items():
        values[f"autoscaling.{k}"] = str(v)
    if config.get("ingress"):
        values["ingress.host"] = str(config["ingress"].get("host", ""))
    return values
