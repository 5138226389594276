"""Pure rules of the credentials service: auth validation, names, challenges, sealing, settings."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any
from unittest import mock

import pytest
from nacl.public import PrivateKey, SealedBox
from pydantic import TypeAdapter, ValidationError

from libs.oci.reference import InvalidReference
from libs.oci.registry.auth import (
    Challenge,
    api_base_url,
    parse_www_authenticate,
    uses_plain_http,
)
from services.credentials.domain import (
    BadPublicKey,
    RuleViolation,
    ValidatedAuth,
    check_rotation,
    display_name,
    key_id,
    manifest_reference,
    registry_host,
    repository_name,
    seal,
    validate_auth,
)
from services.credentials.schemas import Auth, RegistryCreate, pydantic_errors
from services.credentials.settings import Settings

AUTH: TypeAdapter[Any] = TypeAdapter(Auth)
LOOPBACK = ["localhost", "127.0.0.1", "[::1]"]


def check(raw: dict[str, Any]) -> ValidatedAuth:
    return validate_auth(AUTH.validate_python(raw).to_domain())


def fields(exc: pytest.ExceptionInfo[RuleViolation]) -> list[str]:
    return [e.field for e in exc.value.field_errors]


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("ghcr.io", "ghcr.io"),
        ("GHCR.IO", "ghcr.io"),
        ("registry.hub.docker.com", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://localhost:5000/v2/", "localhost:5000"),
        (" quay.io ", "quay.io"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_hosts_are_stored_canonical(typed: str, canonical: str) -> None:
    assert registry_host(typed) == canonical


@pytest.mark.parametrize(
    "typed",
    ["", "   ", "ghcr.io/acme", "user:pw@ghcr.io", "bad host", "-x.io", "h.io:0", "h.io:70000", "a" * 300],
)
def test_bad_hosts_are_refused_on_auth_host(typed: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        registry_host(typed)
    assert fields(exc) == ["auth.host"]
    if "@" in typed:
        assert "pw" not in str(exc.value)


def test_each_auth_type_validates_to_what_is_stored() -> None:
    anon = check({"type": "anonymous", "host": "hub.docker.com"})
    assert (anon.auth_type, anon.host, anon.has_secret) == ("anonymous", "docker.io", False)

    basic = check({"type": "basic", "host": "quay.io", "username": "u", "password": "s3cr3t-value"})
    assert (basic.host, basic.username, basic.password, basic.warnings) == (
        "quay.io",
        "u",
        "s3cr3t-value",
        (),
    )
    assert "s3cr3t-value" not in repr(basic)

    auth = base64.b64encode(b"me:se:cret").decode()
    pasted = check(
        {"type": "docker-config", "config": {"auths": {"https://index.docker.io/v1/": {"auth": auth}}}}
    )
    assert (pasted.host, pasted.username, pasted.password) == ("docker.io", "me", "se:cret")

    vendor = check({"type": "vendor", "host": "x.azurecr.io", "vendor": "azure"})
    assert (vendor.vendor, vendor.has_secret) == ("azure", False)


def test_docker_config_problems_are_all_on_auth_config() -> None:
    for config in (
        {"auths": {"gcr.io": {"username": "_json_key", "password": "{broken"}}},
        {"auths": {"quay.io": {"username": "a:b", "password": "p"}}},
        {"auths": {"quay.io": {"identitytoken": "tok"}}},
        "not json",
    ):
        with pytest.raises(RuleViolation) as exc:
            check({"type": "docker-config", "config": config})
        assert set(fields(exc)) == {"auth.config"}, config
        assert "broken" not in str(exc.value)


def test_basic_field_rules() -> None:
    for raw, field in [
        ({"username": "", "password": "p"}, "auth.username"),
        ({"username": "u", "password": ""}, "auth.password"),
        ({"username": "a:b", "password": "p"}, "auth.username"),
        ({"username": "u\n", "password": "p"}, "auth.username"),
        ({"username": "u" * 257, "password": "p"}, "auth.username"),
        ({"username": "u", "password": "p" * 20000}, "auth.password"),
    ]:
        with pytest.raises(RuleViolation) as exc:
            check({"type": "basic", "host": "quay.io", **raw})
        assert fields(exc) == [field], raw


def test_google_keys_are_minified_and_ecr_warns() -> None:
    key = {"type": "service_account", "client_email": "a@b.c", "private_key": "k"}
    gcp = check(
        {
            "type": "basic",
            "host": "us-docker.pkg.dev",
            "username": "_json_key",
            "password": json.dumps(key, indent=4),
        }
    )
    assert gcp.password == json.dumps(key, separators=(",", ":"))
    ecr = check(
        {
            "type": "basic",
            "host": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "username": "AWS",
            "password": "x",
        }
    )
    assert any("12 hours" in w for w in ecr.warnings)


def test_rotation_keeps_type_and_host() -> None:
    new = check({"type": "basic", "host": "quay.io", "username": "u", "password": "p"})
    check_rotation(current_type="basic", current_host="quay.io", new=new)
    with pytest.raises(RuleViolation) as exc:
        check_rotation(current_type="docker-config", current_host="quay.io", new=new)
    assert fields(exc) == ["auth.type"]
    with pytest.raises(RuleViolation) as exc:
        check_rotation(current_type="basic", current_host="ghcr.io", new=new)
    assert fields(exc) == ["auth.host"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"display_name": "x", "auth": {"type": "basic", "host": "h.io", "username": "u"}},
            ["auth.password"],
        ),
        ({"display_name": "x", "auth": {"type": "ftp"}}, ["auth.type"]),
        ({"display_name": "x", "auth": {}}, ["auth.type"]),
        ({"display_name": "x", "auth": 3}, ["auth"]),
        ({"display_name": "x", "auth": {"type": "vendor", "host": "h", "vendor": "ibm"}}, ["auth.vendor"]),
        ({"display_name": "x", "auth": {"type": "anonymous", "host": "h", "token": "t"}}, ["auth.token"]),
        ({"auth": {"type": "anonymous", "host": "h"}}, ["display_name"]),
    ],
)
def test_pydantic_errors_name_api_fields(body: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ValidationError) as exc:
        RegistryCreate.model_validate(body)
    errors = pydantic_errors(exc.value)
    assert [e.field for e in errors] == expected
    assert all(e.message for e in errors)


def test_password_values_never_appear_in_validation_errors() -> None:
    with pytest.raises(ValidationError) as exc:
        RegistryCreate.model_validate(
            {
                "display_name": "x",
                "auth": {"type": "basic", "host": 5, "username": "u", "password": "hunter2"},
            }
        )
    assert "hunter2" not in json.dumps([[e.field, e.message] for e in pydantic_errors(exc.value)])


def test_display_names() -> None:
    assert display_name("  Prod  ") == "Prod"
    for bad in ("", " ", "a" * 101, "tab\there"):
        with pytest.raises(RuleViolation):
            display_name(bad)


@pytest.mark.parametrize(
    ("host", "typed", "expected"),
    [
        ("docker.io", "nginx", "library/nginx"),
        ("docker.io", "docker.io/library/nginx", "library/nginx"),
        ("ghcr.io", "acme/app", "acme/app"),
        ("ghcr.io", "ghcr.io/acme/app", "acme/app"),
        ("127.0.0.1:5000", "127.0.0.1:5000/team/app", "team/app"),
    ],
)
def test_repository_names(host: str, typed: str, expected: str) -> None:
    assert repository_name(host, typed) == expected


@pytest.mark.parametrize(
    "typed", ["", "Acme/App", "acme/app:1.0", "acme//app", "acme/app@sha256:" + "0" * 64]
)
def test_bad_repository_names(typed: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        repository_name("ghcr.io", typed)
    assert fields(exc) == ["repository"]


def test_manifest_references() -> None:
    assert manifest_reference("1.4.2") == "1.4.2"
    digest = "sha256:" + "a" * 64
    assert manifest_reference(digest) == digest
    for bad in ("", "bad tag", "sha256:short", ".hidden"):
        with pytest.raises(InvalidReference):
            manifest_reference(bad)


@pytest.mark.parametrize(
    ("host", "listed", "plain"),
    [
        ("127.0.0.1:5000", LOOPBACK, True),
        ("localhost", LOOPBACK, True),
        ("[::1]:5000", LOOPBACK, True),
        ("ghcr.io", LOOPBACK, False),
        ("127.0.0.2:5000", LOOPBACK, False),
        ("registry:5000", ["registry:5000"], True),
        ("registry:5001", ["registry:5000"], False),
        ("registry:5001", ["Registry"], True),
    ],
)
def test_plain_http_only_for_listed_hosts(host: str, listed: list[str], plain: bool) -> None:
    assert uses_plain_http(host, listed) is plain


def test_api_base_urls() -> None:
    assert api_base_url("docker.io", LOOPBACK) == "https://registry-1.docker.io"
    assert api_base_url("ghcr.io", LOOPBACK) == "https://ghcr.io"
    assert api_base_url("127.0.0.1:5000", LOOPBACK) == "http://127.0.0.1:5000"


def test_insecure_registries_from_the_environment() -> None:
    with mock.patch.dict(os.environ, {"LANDFALL_INSECURE_REGISTRIES": "registry:5000, localhost"}):
        assert Settings().insecure_registries == ["registry:5000", "localhost"]
    with mock.patch.dict(os.environ, {"LANDFALL_INSECURE_REGISTRIES": '["a.local"]'}):
        assert Settings().insecure_registries == ["a.local"]
    with mock.patch.dict(os.environ, {}, clear=True):
        settings = Settings()
        assert settings.insecure_registries == LOOPBACK
        assert (settings.service_name, settings.http_port) == ("credentials", 8081)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            [
                'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull"'
            ],
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:a/b:pull",
                    },
                )
            ],
        ),
        (['Basic realm="landfall-registry"'], [Challenge("basic", {"realm": "landfall-registry"})]),
        (
            ['Basic realm="r", Bearer realm="https://t/x", scope="repository:a:pull,push"'],
            [
                Challenge("basic", {"realm": "r"}),
                Challenge("bearer", {"realm": "https://t/x", "scope": "repository:a:pull,push"}),
            ],
        ),
        (
            ["bearer REALM=https://t/x,service=reg"],
            [Challenge("bearer", {"realm": "https://t/x", "service": "reg"})],
        ),
        (['Bearer realm="a\\"b"'], [Challenge("bearer", {"realm": 'a"b'})]),
        (["Basic", 'Bearer realm="x"'], [Challenge("basic", {}), Challenge("bearer", {"realm": "x"})]),
        ([""], []),
    ],
)
def test_www_authenticate_parsing(headers: list[str], expected: list[Challenge]) -> None:
    assert parse_www_authenticate(headers) == expected


def test_sealed_secrets_open_only_with_the_recipient_key() -> None:
    key = PrivateKey.generate()
    public = bytes(key.public_key)
    sealed = seal('{"auths":{}}', recipient_public_key=base64.b64encode(public).decode(), registry_id="reg_x")
    assert sealed.recipient_key_id == hashlib.sha256(public).hexdigest()[:16] == key_id(public)
    assert sealed.registry_id == "reg_x"
    assert SealedBox(key).decrypt(base64.b64decode(sealed.ciphertext)) == b'{"auths":{}}'
    for bad in ("", "%%%", base64.b64encode(b"x" * 31).decode(), base64.b64encode(bytes(32)).decode()):
        with pytest.raises(BadPublicKey):
            seal("x", recipient_public_key=bad, registry_id="reg_x")
