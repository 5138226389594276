"""Pure rules: what a registry's `auth` may be, and names the API accepts.

Why this module exists: every rule that decides whether a request is valid is
here, free of I/O, so it can be tested exhaustively and so that each failure
names the API field the user must fix (`auth.host`, `auth.password`,
`auth.config`, ...). The vendor- and Docker-specific knowledge is in
`libs.oci`; this module maps it onto the API's fields.

What is subtle:

* A Docker config carries the host, username and password all in one field, so
  every problem with its content is reported on `auth.config`, even when the
  same problem with a `basic` auth would be on `auth.username`/`auth.password`.
* The password to store may differ from the one given: Google `_json_key`
  passwords are minified (see `libs.oci.vendors`).
* No message here ever contains a password or a config: inputs are echoed only
  when they are not secret (hosts, display names, repository names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from libs.oci.dockerconfig import CONFIG_FIELD, DockerConfigError, parse_docker_config
from libs.oci.reference import (
    InvalidReference,
    canonical_host,
    parse_reference,
    validate_digest,
    validate_host,
    validate_tag,
)
from libs.oci.vendors import FieldError, check_basic_credentials, check_vendor_host
from services.credentials.models import (
    AUTH_TYPES,
    AnonymousAuth,
    Auth,
    AuthType,
    BasicAuth,
    DockerConfigAuth,
    VendorAuth,
)

HOST_FIELD = "auth.host"
USERNAME_FIELD = "auth.username"
PASSWORD_FIELD = "auth.password"
DISPLAY_NAME_MAX = 100
USERNAME_MAX = 256
PASSWORD_MAX = 16 * 1024  # a Google service-account key is ~2.4 KiB; tokens are far shorter
HOST_MAX = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RuleViolation(Exception):
    """One or more fields break a rule; `errors` name them. Never carries a secret."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def _fail(field_name: str, message: str) -> RuleViolation:
    return RuleViolation([FieldError(field_name, message)])


@dataclass(frozen=True, slots=True)
class ValidatedAuth:
    """An `auth` that passed every rule: what to store, and what to tell the user."""

    auth_type: AuthType
    host: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    vendor: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def has_secret(self) -> bool:
        return self.password is not None


# --- names -------------------------------------------------------------------------------------


def display_name(value: str) -> str:
    """Trimmed display name; uniqueness (case-insensitive) is the database's job."""
    name = value.strip()
    if not name:
        raise _fail("display_name", "display_name is empty")
    if len(name) > DISPLAY_NAME_MAX:
        raise _fail("display_name", f"display_name is longer than {DISPLAY_NAME_MAX} characters")
    if _CONTROL.search(name):
        raise _fail("display_name", "display_name must not contain control characters")
    return name


def registry_host(value: str, field_name: str = HOST_FIELD) -> str:
    """The canonical host for what a user typed: "https://Index.Docker.io/v1/" -> "docker.io"."""
    text = value.strip()
    if not text:
        raise _fail(field_name, "host is empty")
    if len(text) > HOST_MAX:
        raise _fail(field_name, f"host is longer than {HOST_MAX} characters")
    without_scheme = text.split("://", 1)[1] if "://" in text else text
    if "@" in without_scheme.split("/", 1)[0]:
        raise _fail(field_name, "host must not contain credentials (user@host); put them in the auth fields")
    _, _, path = without_scheme.partition("/")
    if path.strip("/") not in ("", "v1", "v2"):
        raise _fail(
            field_name, "give the registry host only (e.g. ghcr.io or localhost:5000), not a repository path"
        )
    try:
        return validate_host(canonical_host(text))
    except InvalidReference as exc:
        raise _fail(field_name, exc.reason) from None


# --- auth --------------------------------------------------------------------------------------


def _basic(host: str, username: str, password: str, *, on_config: bool) -> tuple[str, list[str]]:
    """Length limits and vendor rules; returns (password to store, warnings)."""
    user_field = CONFIG_FIELD if on_config else USERNAME_FIELD
    pass_field = CONFIG_FIELD if on_config else PASSWORD_FIELD
    errors: list[FieldError] = []
    if len(username) > USERNAME_MAX:
        errors.append(FieldError(user_field, f"username is longer than {USERNAME_MAX} characters"))
    elif ":" in username:
        errors.append(
            FieldError(user_field, 'username must not contain ":" (registries split user:password)')
        )
    elif _CONTROL.search(username):
        errors.append(FieldError(user_field, "username must not contain control characters"))
    if len(password) > PASSWORD_MAX:
        errors.append(FieldError(pass_field, f"password is longer than {PASSWORD_MAX} characters"))
    if errors:
        raise RuleViolation(errors)
    check = check_basic_credentials(host, username, password)
    if check.errors:
        raise RuleViolation(
            [FieldError(CONFIG_FIELD, e.message) for e in check.errors] if on_config else list(check.errors)
        )
    return check.password, list(check.warnings)


def validate_auth(auth: Auth) -> ValidatedAuth:
    """Apply every rule for the auth type; raises `RuleViolation` naming the fields."""
    if isinstance(auth, AnonymousAuth):
        return ValidatedAuth(auth_type="anonymous", host=registry_host(auth.host))
    if isinstance(auth, BasicAuth):
        host = registry_host(auth.host)
        password, warnings = _basic(host, auth.username, auth.password.get_secret_value(), on_config=False)
        return ValidatedAuth(
            auth_type="basic", host=host, username=auth.username, password=password, warnings=tuple(warnings)
        )
    if isinstance(auth, DockerConfigAuth):
        try:
            parsed = parse_docker_config(auth.config)
        except DockerConfigError as exc:
            raise _fail(exc.field, exc.message) from None
        if auth.host is not None and registry_host(auth.host) != parsed.host:
            raise _fail(
                HOST_FIELD,
                f"host {registry_host(auth.host)!r} differs from the registry in the config "
                f"({parsed.host!r}); leave host out, it comes from the config",
            )
        password, warnings = _basic(parsed.host, parsed.username, parsed.password, on_config=True)
        return ValidatedAuth(
            auth_type="docker-config",
            host=parsed.host,
            username=parsed.username,
            password=password,
            warnings=tuple(warnings),
        )
    assert isinstance(auth, VendorAuth)
    host = registry_host(auth.host)
    problem = check_vendor_host(auth.vendor, host)
    if problem is not None:
        raise _fail(HOST_FIELD, problem)
    return ValidatedAuth(auth_type="vendor", host=host, vendor=auth.vendor)


def check_rotation(*, current_type: str, current_host: str, new: ValidatedAuth) -> None:
    """New credentials replace old ones of the same type for the same host, nothing else."""
    if new.auth_type != current_type:
        raise _fail(
            "auth.type",
            f"this registry uses {current_type!r} auth; new credentials must have the same type "
            "(create another registry for another type)",
        )
    if new.host != current_host:
        field_name = CONFIG_FIELD if new.auth_type == "docker-config" else HOST_FIELD
        raise _fail(
            field_name,
            f"the host of a registry cannot change (it is {current_host!r}; components' images name it); "
            "create another registry for another host",
        )


def pydantic_errors(exc: ValidationError) -> list[FieldError]:
    """Field errors from pydantic with the union's tag taken out of the path.

    Pydantic reports `auth.basic.password`; the API field is `auth.password`.
    A missing or unknown `type` is reported on `auth.type`.
    """
    errors: list[FieldError] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [str(p) for p in err["loc"]]
        if len(loc) >= 2 and loc[0] == "auth" and loc[1] in AUTH_TYPES:
            del loc[1]
        kind = err["type"]
        if kind in ("union_tag_not_found", "union_tag_invalid"):
            loc = [*loc, "type"]
            message = f"type must be one of: {', '.join(AUTH_TYPES)}"
        elif kind == "model_attributes_type" and loc == ["auth"]:
            message = "auth must be an object with a type"
        elif kind == "missing":
            message = f"{loc[-1]} is required"
        elif kind == "extra_forbidden":
            message = f"{loc[-1]} is not a field here" + (" for this auth type" if loc[0] == "auth" else "")
        else:
            message = err["msg"]
        errors.append(FieldError(".".join(loc) or "body", message))
    return errors


# --- registry API arguments --------------------------------------------------------------------


def repository_name(host: str, value: str) -> str:
    """A repository on `host` as the distribution API names it ("nginx" on Docker Hub -> library/nginx)."""
    text = value.strip()
    if not text:
        raise _fail("repository", "repository is empty")
    for prefix in {host, canonical_host(host)}:
        if text.lower().startswith(prefix + "/"):
            text = text[len(prefix) + 1 :]
    try:
        reference = parse_reference(f"{host}/{text}")
    except InvalidReference as exc:
        raise _fail("repository", exc.reason) from None
    if reference.tag is not None or reference.digest is not None:
        raise _fail("repository", "give a repository name without a tag or digest, e.g. library/nginx")
    return reference.repository


def manifest_reference(value: str) -> str:
    """A tag or a digest, validated (raises `InvalidReference`)."""
    if ":" in value:
        return validate_digest(value)
    return validate_tag(value)


def _split_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def uses_plain_http(host: str, insecure: Iterable[str]) -> bool:
    """Whether `host` is listed as an insecure (plain HTTP) registry, by name or name:port."""
    listed = {entry.strip().lower() for entry in insecure if entry.strip()}
    host = host.lower()
    return host in listed or _split_port(host) in listed


def secret_payload(auth: ValidatedAuth) -> Mapping[str, Any]:
    """What is written to Vault for a registry with a secret."""
    assert auth.password is not None
    return {"username": auth.username or "", "password": auth.password, "host": auth.host}
