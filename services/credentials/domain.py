"""The credentials domain: registries, what their `auth` may be, and how a password may leave.

Why this module exists: every rule that decides whether a registry is valid is
here, free of I/O and of HTTP, so it can be tested exhaustively and so that each
failure names the API field the user must fix (`auth.host`, `auth.password`,
`auth.config`, ...). The vendor- and Docker-specific knowledge is in `libs.oci`;
this module maps it onto the API's fields. The HTTP bodies (`schemas`) convert
themselves into the `RegistryAuth` types below; nothing here knows them.

What is subtle:

* A Docker config carries the host, username and password all in one field, so
  every problem with its content is reported on `auth.config`, even when the
  same problem with a `basic` auth would be on `auth.username`/`auth.password`.
* The password to store may differ from the one given: Google `_json_key`
  passwords are minified (see `libs.oci.vendors`).
* No message here ever contains a password or a config: inputs are echoed only
  when they are not secret (hosts, display names, repository names), and every
  type holding a secret keeps it out of `repr`.
* A pull secret leaves the service only sealed (libsodium sealed box, X25519 +
  XSalsa20-Poly1305, anonymous sender) to one data plane's public key, whose
  private half never leaves its cluster: the orchestrator and NATS carry a
  ciphertext they cannot read. Sealing is pure computation, so it lives here
  under the same "no I/O" contract as the rules. `recipient_key_id` (sha256 of
  the raw 32-byte key, first 16 hex characters) lets the agent refuse, with a
  clear reason, a secret sealed to an older key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox

from libs.contracts.messages import AuthType, SealedSecret
from libs.oci.dockerconfig import CONFIG_FIELD, DockerConfigError, parse_docker_config
from libs.oci.reference import (
    InvalidReference,
    canonical_host,
    parse_reference,
    validate_digest,
    validate_host,
    validate_tag,
)
from libs.oci.registry.types import CheckResult as CheckResult
from libs.oci.registry.types import Credentials as Credentials
from libs.oci.vendors import FieldError, Vendor, check_basic_credentials, check_vendor_host
from libs.runtime.errors import Conflict, Invalid

AUTH_TYPES: Final[tuple[AuthType, ...]] = ("anonymous", "basic", "docker-config", "vendor")
SECRET_TYPES: Final = frozenset({"basic", "docker-config"})  # the types with a secret in Vault
HOST_FIELD: Final = "auth.host"
USERNAME_FIELD: Final = "auth.username"
PASSWORD_FIELD: Final = "auth.password"
DISPLAY_NAME_MAX: Final = 100
USERNAME_MAX: Final = 256
PASSWORD_MAX: Final = 16 * 1024  # a Google service-account key is ~2.4 KiB; tokens are far shorter
HOST_MAX: Final = 255
KEY_BYTES: Final = 32

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registry:
    """A registry's metadata; `secret_version` is the Vault version in use (None: no secret)."""

    id: str
    org: str
    display_name: str
    host: str
    auth_type: AuthType
    username: str | None
    vendor: Vendor | None
    warnings: list[str]
    secret_version: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Change:
    """A registry as a change left it, and what the audit trail's item says of it (never a secret)."""

    registry: Registry
    detail: str


# --- what a user may send as `auth` ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnonymousAccess:
    host: str


@dataclass(frozen=True, slots=True)
class Login:
    host: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DockerConfigLogin:
    config: dict[str, Any] | str = field(repr=False)
    host: str | None = None


@dataclass(frozen=True, slots=True)
class VendorIdentity:
    host: str
    vendor: Vendor


RegistryAuth = AnonymousAccess | Login | DockerConfigLogin | VendorIdentity


@dataclass(frozen=True, slots=True)
class ValidatedAuth:
    """An `auth` that passed every rule: what to store, and what to tell the user."""

    auth_type: AuthType
    host: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    vendor: Vendor | None = None
    warnings: tuple[str, ...] = ()

    @property
    def has_secret(self) -> bool:
        return self.password is not None


# --- errors ------------------------------------------------------------------------------------


class RuleViolation(Invalid):
    """One or more fields break a rule (422 naming every one of them). Never carries a secret."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors[0].field, errors[0].message)
        self.field_errors = errors
        self.detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        self.args = ("; ".join(f"{e.field}: {e.message}" for e in errors),)

    def errors(self) -> list[dict[str, str]]:
        return [{"field": e.field, "message": e.message} for e in self.field_errors]


def _fail(field_name: str, message: str) -> RuleViolation:
    return RuleViolation([FieldError(field_name, message)])


class RegistryInUse(Conflict):
    """Components still pull from the registry; `components` names them (`org/project/component`)."""

    def __init__(self, components: list[str]) -> None:
        shown = ", ".join(components[:20]) + (" ..." if len(components) > 20 else "")
        super().__init__(
            f"the registry is used by {len(components)} component(s): {shown}; "
            "point them at another registry or delete them first"
        )
        self.components = components
        self.shown = shown


class RegistryBroken(Exception):
    """The registry's stored secret is missing from Vault; new credentials (PATCH) fix it."""


class BadPublicKey(Invalid):
    """The recipient key is not a base64 X25519 public key (an `invalid` RPC answer)."""

    def __init__(self, message: str) -> None:
        super().__init__("recipient_public_key", message)
        self.detail = message  # the message already names the field
        self.args = (message,)


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


def validate_auth(auth: RegistryAuth) -> ValidatedAuth:
    """Apply every rule for the auth type; raises `RuleViolation` naming the fields."""
    if isinstance(auth, AnonymousAccess):
        return ValidatedAuth(auth_type="anonymous", host=registry_host(auth.host))
    if isinstance(auth, Login):
        host = registry_host(auth.host)
        password, warnings = _basic(host, auth.username, auth.password, on_config=False)
        return ValidatedAuth(
            auth_type="basic", host=host, username=auth.username, password=password, warnings=tuple(warnings)
        )
    if isinstance(auth, DockerConfigLogin):
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


def nothing_to_update() -> RuleViolation:
    return _fail("body", "send display_name and/or auth (new credentials)")


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


# --- sealing -----------------------------------------------------------------------------------


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def decode_public_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadPublicKey("recipient_public_key is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise BadPublicKey(f"recipient_public_key must be {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def seal(plaintext: str, *, recipient_public_key: str, registry_id: str) -> SealedSecret:
    """`plaintext` sealed to the data plane's X25519 key (raises `BadPublicKey`)."""
    raw = decode_public_key(recipient_public_key)
    try:
        ciphertext = SealedBox(PublicKey(raw)).encrypt(plaintext.encode())
    except CryptoError:
        raise BadPublicKey("recipient_public_key is not a usable X25519 key") from None
    return SealedSecret(
        recipient_key_id=key_id(raw),
        ciphertext=base64.b64encode(ciphertext).decode("ascii"),
        registry_id=registry_id,
    )
