"""Docker config JSON validation and `.dockerconfigjson` generation."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.oci.dockerconfig import (
    DockerConfigAuth,
    DockerConfigError,
    build_docker_config_json,
    parse_docker_config,
)

SENTINEL = "S3NTINEL-do-not-leak"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _config(key: str, entry: object) -> dict[str, object]:
    return {"auths": {key: entry}}


# (config, host, username, password)
VALID: list[tuple[dict[str, object] | str, str, str, str]] = [
    (_config("https://index.docker.io/v1/", {"auth": _b64("me:pa:ss")}), "docker.io", "me", "pa:ss"),
    (_config("index.docker.io", {"auth": _b64("me:pw")}), "docker.io", "me", "pw"),
    (_config("docker.io", {"username": "me", "password": "pw"}), "docker.io", "me", "pw"),
    (_config("https://registry-1.docker.io/v2/", {"auth": _b64("me:pw")}), "docker.io", "me", "pw"),
    (_config("GHCR.IO", {"username": "octocat", "password": "ghp_x"}), "ghcr.io", "octocat", "ghp_x"),
    (_config("http://localhost:5000", {"auth": _b64("u:p")}), "localhost:5000", "u", "p"),
    (_config("registry.example.com:5000/v2/", {"auth": _b64("u:p")}), "registry.example.com:5000", "u", "p"),
    (_config("[::1]:5000", {"auth": _b64("u:p")}), "[::1]:5000", "u", "p"),
    # both forms present and agreeing; unrelated fields ignored
    (
        {
            "auths": {"quay.io": {"auth": _b64("u:p"), "username": "u", "password": "p", "email": "u@x"}},
            "HttpHeaders": {"User-Agent": "Docker-Client/24"},
            "credsStore": "",
        },
        "quay.io",
        "u",
        "p",
    ),
    # the same thing as JSON text, with non-ASCII in the password
    (json.dumps(_config("ghcr.io", {"auth": _b64("octocat:pässwörd")})), "ghcr.io", "octocat", "pässwörd"),
    # identity token next to a full username/password: the basic credentials win
    (_config("quay.io", {"auth": _b64("u:p"), "identitytoken": "tok"}), "quay.io", "u", "p"),
]


@pytest.mark.parametrize(("config", "host", "username", "password"), VALID)
def test_parse_valid(config: dict[str, object] | str, host: str, username: str, password: str) -> None:
    assert parse_docker_config(config) == DockerConfigAuth(host=host, username=username, password=password)


# (config, fragment of the message)
INVALID: list[tuple[dict[str, object] | str, str]] = [
    (f'{{"auths": {SENTINEL}', "not valid JSON (line 1, column 11)"),
    ("[1, 2]", "must be a JSON object"),
    ('"{}"', "must be a JSON object"),
    (_b64(json.dumps(_config("ghcr.io", {"auth": _b64(f"u:{SENTINEL}")}))), "looks base64-encoded"),
    ({"auths": {"https://index.docker.io/v1/": {}}, "credsStore": "desktop"}, "credential helpers cannot"),
    ({"auths": {}, "credHelpers": {"gcr.io": "gcloud"}}, "put the credentials inline"),
    ({}, 'no "auths" object'),
    ({"HttpHeaders": {}}, 'no "auths" object'),
    ({"https://index.docker.io/v1/": {"auth": _b64(f"u:{SENTINEL}"), "email": "x"}}, "legacy .dockercfg"),
    ({"auths": []}, '"auths" must be an object'),
    ({"auths": {}}, '"auths" is empty'),
    (
        {"auths": {"ghcr.io": {"auth": _b64("u:p")}, "quay.io": {"auth": _b64("u:p")}}},
        "only one registry per config",
    ),
    (_config("ghcr.io", "u:p"), "entry for ghcr.io must be an object"),
    (_config("", {"auth": _b64("u:p")}), "empty registry key"),
    (_config("not a host!", {"auth": _b64("u:p")}), "invalid registry host"),
    (_config("ghcr.io", {"auth": f"{SENTINEL}!"}), '"auth" is not valid base64'),
    (_config("ghcr.io", {"auth": base64.b64encode(b"\xff\xfe:x").decode()}), '"auth" is not valid base64'),
    (_config("ghcr.io", {"auth": _b64(SENTINEL)}), 'no ":" found'),
    (_config("ghcr.io", {"auth": 42}), '"auth" must be a string'),
    (_config("ghcr.io", {"auth": _b64("u:p"), "password": SENTINEL}), "disagree"),
    (
        _config("ghcr.io", {"identitytoken": SENTINEL}),
        '"identitytoken" and "registrytoken" are not supported',
    ),
    (_config("ghcr.io", {"registrytoken": SENTINEL}), "not supported"),
    # what `az acr login` writes: a placeholder user with an empty password, plus an identity token
    (
        _config(
            "myregistry.azurecr.io",
            {"auth": _b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": SENTINEL},
        ),
        "not supported",
    ),
    (_config("ghcr.io", {}), "no credentials"),
    (_config("ghcr.io", {"email": "a@b"}), "no credentials"),
    (_config("ghcr.io", {"auth": _b64(f":{SENTINEL}")}), "empty username"),
    (_config("ghcr.io", {"username": "u"}), "empty password"),
    (_config("ghcr.io", {"password": SENTINEL}), "empty username"),
]


@pytest.mark.parametrize(("config", "fragment"), INVALID)
def test_parse_invalid(config: dict[str, object] | str, fragment: str) -> None:
    with pytest.raises(DockerConfigError) as info:
        parse_docker_config(config)
    assert fragment in str(info.value)
    assert info.value.field == "auth.config"
    assert info.value.message == str(info.value)
    assert SENTINEL not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_password_is_not_in_repr() -> None:
    parsed = parse_docker_config(_config("ghcr.io", {"username": "u", "password": SENTINEL}))
    assert SENTINEL not in repr(parsed)


@pytest.mark.parametrize(
    ("host", "server"),
    [
        ("docker.io", "https://index.docker.io/v1/"),
        ("index.docker.io", "https://index.docker.io/v1/"),
        ("https://index.docker.io/v1/", "https://index.docker.io/v1/"),
        ("registry-1.docker.io", "https://index.docker.io/v1/"),
        ("ghcr.io", "ghcr.io"),
        ("GHCR.io", "ghcr.io"),
        ("localhost:5000", "localhost:5000"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
    ],
)
def test_build_docker_config_json(host: str, server: str) -> None:
    document = json.loads(build_docker_config_json(host, "me", "pa:ss"))
    assert document == {"auths": {server: {"username": "me", "password": "pa:ss", "auth": _b64("me:pa:ss")}}}


def test_build_refuses_colon_in_username() -> None:
    with pytest.raises(DockerConfigError) as info:
        build_docker_config_json("ghcr.io", "a:b", SENTINEL)
    assert info.value.field == "auth.username"
    assert SENTINEL not in str(info.value)


_hosts = st.sampled_from(["docker.io", "ghcr.io", "quay.io", "localhost:5000", "myregistry.azurecr.io"])
_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(_hosts, _text.filter(lambda u: ":" not in u), _text)
def test_build_then_parse_round_trips(host: str, username: str, password: str) -> None:
    parsed = parse_docker_config(build_docker_config_json(host, username, password))
    assert parsed == DockerConfigAuth(host=host, username=username, password=password)
