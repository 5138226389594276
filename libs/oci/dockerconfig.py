"""Docker config JSON (`~/.docker/config.json`, `.dockerconfigjson`) in and out.

Why this exists: users often already have working registry credentials as a Docker
config and paste it whole. We accept exactly one inline registry credential from it,
and we produce the `.dockerconfigjson` a Kubernetes `kubernetes.io/dockerconfigjson`
image-pull Secret expects.

What is subtle:

* `credsStore`/`credHelpers` mean "run docker-credential-<name> on this machine": the
  secret is not in the file at all, and nothing on a cluster node can run that program.
* `auths` keys come in many spellings: "https://index.docker.io/v1/" (what `docker login`
  writes for Docker Hub), bare hosts, or URLs with a path. They go through
  `canonical_host`, the same conversion Docker's `ConvertToHostname` does.
* `auth` is base64("user:pass") with standard padding; the password may contain `:` (the
  split is at the first one). When both `auth` and `username`/`password` are present,
  Docker and the kubelet use `auth`, so a disagreement is refused rather than guessed.
* `identitytoken` (an OAuth refresh token, e.g. from `az acr login`, whose `auth` then has
  an empty password) and `registrytoken` (a bearer token) cannot be used by the kubelet,
  which only sends basic credentials.
* For Docker Hub the generated key must be "https://index.docker.io/v1/", the spelling
  every Docker-compatible client and the kubelet recognise for Docker Hub.
* No error message contains credential material; `DockerConfigAuth.password` is kept out
  of `repr`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from libs.oci.reference import DOCKER_HUB, InvalidReference, canonical_host, validate_host

CONFIG_FIELD: Final = "auth.config"
DOCKER_HUB_CONFIG_KEY: Final = "https://index.docker.io/v1/"


class DockerConfigError(ValueError):
    """A Docker config we cannot use; `field` names the API field, the message holds no secret."""

    def __init__(self, message: str, field: str = CONFIG_FIELD) -> None:
        super().__init__(message)
        self.field = field

    @property
    def message(self) -> str:
        return str(self)


@dataclass(frozen=True, slots=True)
class DockerConfigAuth:
    host: str
    username: str
    password: str = field(repr=False)


def _load(value: Mapping[str, object] | str) -> Mapping[str, object]:
    if not isinstance(value, str):
        return value
    try:
        loaded: object = json.loads(value)
    except json.JSONDecodeError as exc:
        if _looks_like_base64_json(value):
            raise DockerConfigError(
                "the Docker config looks base64-encoded; paste the decoded JSON "
                "(e.g. the output of `base64 -d`)"
            ) from None
        where = f"line {exc.lineno}, column {exc.colno}"
        raise DockerConfigError(f"the Docker config is not valid JSON ({where})") from None
    if not isinstance(loaded, dict):
        raise DockerConfigError("the Docker config must be a JSON object")
    return loaded


def _looks_like_base64_json(value: str) -> bool:
    try:
        decoded = base64.b64decode("".join(value.split()), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return decoded.lstrip().startswith("{")


def _decode_auth(auth: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(auth, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise DockerConfigError('"auth" is not valid base64 of "username:password"') from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise DockerConfigError('"auth" must be base64 of "username:password" (no ":" found after decoding)')
    return username, password


def _entry_credentials(entry: Mapping[str, object]) -> tuple[str, str]:
    def text(key: str) -> str:
        item = entry.get(key, "")
        if item is None:
            return ""
        if not isinstance(item, str):
            raise DockerConfigError(f'"{key}" must be a string')
        return item

    auth, username, password = text("auth"), text("username"), text("password")
    has_token = bool(text("identitytoken") or text("registrytoken"))
    if auth:
        auth_user, auth_password = _decode_auth(auth)
        if (username or password) and (username, password) != (auth_user, auth_password):
            raise DockerConfigError('"auth" and "username"/"password" disagree; keep only one of them')
        username, password = auth_user, auth_password
    if has_token and not password:
        raise DockerConfigError(
            '"identitytoken" and "registrytoken" are not supported: Kubernetes can only send a username '
            'and password; put those inline ("auth" or "username" + "password"), e.g. an access token '
            "or a vendor-specific password"
        )
    if not username and not password:
        raise DockerConfigError(
            'the registry entry has no credentials: expected "auth" or "username" + "password"'
        )
    if not username:
        raise DockerConfigError("the registry entry has an empty username")
    if not password:
        raise DockerConfigError("the registry entry has an empty password")
    return username, password


def parse_docker_config(value: Mapping[str, object] | str) -> DockerConfigAuth:
    """The single inline registry credential in a Docker config (object or JSON text)."""
    config = _load(value)
    if config.get("credsStore") or config.get("credHelpers"):
        raise DockerConfigError(
            "the Docker config uses credsStore/credHelpers: executable credential helpers cannot be "
            'used; put the credentials inline (an "auths" entry with "auth" or username + password)'
        )
    auths = config.get("auths")
    if auths is None:
        if config and all(isinstance(v, dict) and "auth" in v for v in config.values()):
            raise DockerConfigError(
                'this looks like a legacy .dockercfg; wrap the registry entries in {"auths": {...}}'
            )
        raise DockerConfigError('the Docker config has no "auths" object')
    if not isinstance(auths, dict):
        raise DockerConfigError('"auths" must be an object mapping registry hosts to credentials')
    if len(auths) == 0:
        raise DockerConfigError('"auths" is empty: add the registry to deploy from')
    if len(auths) > 1:
        raise DockerConfigError(
            f'"auths" lists {len(auths)} registries: only one registry per config; '
            "keep just the registry the image comes from"
        )
    ((key, entry),) = auths.items()
    host = canonical_host(str(key))
    if host == "":
        raise DockerConfigError('"auths" has an empty registry key')
    try:
        host = validate_host(host)
    except InvalidReference as exc:
        raise DockerConfigError(f'"auths" key: {exc.reason}') from None
    if not isinstance(entry, dict):
        raise DockerConfigError(f'the "auths" entry for {host} must be an object')
    username, password = _entry_credentials(entry)
    return DockerConfigAuth(host=host, username=username, password=password)


def build_docker_config_json(host: str, username: str, password: str) -> str:
    """The `.dockerconfigjson` content of an image-pull Secret for one registry."""
    if ":" in username:
        raise DockerConfigError('the username must not contain ":"', field="auth.username")
    canonical = canonical_host(host)
    server = DOCKER_HUB_CONFIG_KEY if canonical == DOCKER_HUB else canonical
    auth = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    entry = {"username": username, "password": password, "auth": auth}
    return json.dumps({"auths": {server: entry}}, separators=(",", ":"))
