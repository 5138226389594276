"""Vendor host recognition and the vendor rules for basic credentials."""

from __future__ import annotations

import base64
import json

import pytest

from libs.oci.vendors import (
    CredentialCheck,
    FieldError,
    check_basic_credentials,
    check_vendor_host,
    is_aws_ecr,
    is_azure,
    is_docker_hub,
    is_gcp,
    is_ghcr,
    vendor_for_host,
)

SENTINEL = "S3NTINEL-do-not-leak"

# (host, vendor, docker hub, ghcr)
HOSTS: list[tuple[str, str | None, bool, bool]] = [
    ("docker.io", None, True, False),
    ("index.docker.io", None, True, False),
    ("https://index.docker.io/v1/", None, True, False),
    ("registry-1.docker.io", None, True, False),
    ("ghcr.io", None, False, True),
    ("GHCR.IO", None, False, True),
    ("quay.io", None, False, False),
    ("localhost:5000", None, False, False),
    # Google
    ("us-central1-docker.pkg.dev", "gcp", False, False),
    ("europe-docker.pkg.dev", "gcp", False, False),
    ("asia-northeast1-docker.pkg.dev", "gcp", False, False),
    ("gcr.io", "gcp", False, False),
    ("eu.gcr.io", "gcp", False, False),
    ("us.gcr.io", "gcp", False, False),
    ("asia.gcr.io", "gcp", False, False),
    ("https://gcr.io", "gcp", False, False),
    ("docker.pkg.dev", None, False, False),
    ("us-central1-docker.pkg.dev.example.com", None, False, False),
    ("gcr.io.example.com", None, False, False),
    ("notgcr.io", None, False, False),
    ("us-central1-python.pkg.dev", None, False, False),
    # Azure
    ("myregistry.azurecr.io", "azure", False, False),
    ("MyRegistry.azurecr.io", "azure", False, False),
    ("contosoacr-e7f8gxd5a4c7hmbh.azurecr.io", "azure", False, False),
    ("myregistry.azurecr.cn", "azure", False, False),
    ("myregistry.azurecr.us", "azure", False, False),
    ("https://myregistry.azurecr.io/", "azure", False, False),
    ("azurecr.io", None, False, False),
    ("myregistry.azurecr.io.example.com", None, False, False),
    ("myregistry.azurecr.io:5000", None, False, False),
    # Amazon ECR (private)
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "aws", False, False),
    ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "aws", False, False),
    ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "aws", False, False),
    ("123456789012.dkr-ecr.eu-west-1.on.aws", "aws", False, False),
    ("123456789012.dkr-ecr-fips.us-east-1.on.aws", "aws", False, False),
    ("https://123456789012.dkr.ecr.eu-central-1.amazonaws.com", "aws", False, False),
    ("12345678901.dkr.ecr.us-east-1.amazonaws.com", None, False, False),
    ("1234567890123.dkr.ecr.us-east-1.amazonaws.com", None, False, False),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com.example.com", None, False, False),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", None, False, False),
    ("public.ecr.aws", None, False, False),
]


@pytest.mark.parametrize(("host", "vendor", "hub", "ghcr"), HOSTS, ids=[h[0] for h in HOSTS])
def test_host_recognition(host: str, vendor: str | None, hub: bool, ghcr: bool) -> None:
    assert vendor_for_host(host) == vendor
    assert is_gcp(host) == (vendor == "gcp")
    assert is_azure(host) == (vendor == "azure")
    assert is_aws_ecr(host) == (vendor == "aws")
    assert is_docker_hub(host) == hub
    assert is_ghcr(host) == ghcr


@pytest.mark.parametrize(
    ("vendor", "host", "fragment"),
    [
        ("azure", "myregistry.azurecr.io", None),
        ("gcp", "europe-west4-docker.pkg.dev", None),
        ("aws", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", None),
        ("azure", "ghcr.io", "<registry>.azurecr.io"),
        ("gcp", "myregistry.azurecr.io", "<location>-docker.pkg.dev"),
        ("aws", "public.ecr.aws", "<12-digit account id>.dkr.ecr.<region>.amazonaws.com"),
        ("aws", "gcr.io", "'gcr.io' is not an Amazon ECR private registry host"),
        ("ibm", "icr.io", "unknown vendor 'ibm'"),
    ],
)
def test_check_vendor_host(vendor: str, host: str, fragment: str | None) -> None:
    message = check_vendor_host(vendor, host)
    if fragment is None:
        assert message is None
    else:
        assert message is not None
        assert fragment in message


# --- basic credentials -------------------------------------------------------------------------------

KEY = {
    "type": "service_account",
    "project_id": "projét-1",
    "private_key_id": "abc123",
    "private_key": f"-----BEGIN PRIVATE KEY-----\n{SENTINEL}\n-----END PRIVATE KEY-----\n",
    "client_email": "puller@projet-1.iam.gserviceaccount.com",
    "client_id": "1234567890",
}
# What `jq -c . key.json` prints: key order kept, non-ASCII kept, "\n" stays escaped.
KEY_MINIFIED = (
    '{"type":"service_account","project_id":"projét-1","private_key_id":"abc123",'
    f'"private_key":"-----BEGIN PRIVATE KEY-----\\n{SENTINEL}\\n-----END PRIVATE KEY-----\\n",'
    '"client_email":"puller@projet-1.iam.gserviceaccount.com","client_id":"1234567890"}'
)
GAR = "europe-west4-docker.pkg.dev"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def _messages(check: CredentialCheck) -> list[str]:
    return [e.message for e in check.errors] + check.warnings


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_json_key_is_minified_like_jq() -> None:
    check = check_basic_credentials(GAR, "_json_key", json.dumps(KEY, indent=2, ensure_ascii=False))
    assert check.errors == []
    assert check.warnings == []
    assert check.ok
    assert check.password == KEY_MINIFIED
    assert json.loads(check.password) == KEY


def test_json_key_base64_is_decoded_checked_and_reencoded() -> None:
    pretty = _b64(json.dumps(KEY, indent=4, ensure_ascii=False))
    wrapped = "\n".join(pretty[i : i + 76] for i in range(0, len(pretty), 76))  # `base64` without -w0
    check = check_basic_credentials("gcr.io", "_json_key_base64", wrapped)
    assert check.errors == []
    assert check.password == _b64(KEY_MINIFIED)


def _without(name: str) -> str:
    return json.dumps({k: v for k, v in KEY.items() if k != name})


@pytest.mark.parametrize(
    ("username", "password", "fragment"),
    [
        ("_json_key", f"{{not json {SENTINEL}", "is not valid JSON (line 1, column 2)"),
        ("_json_key", json.dumps([SENTINEL]), "must be a JSON object"),
        ("_json_key", json.dumps({**KEY, "type": "authorized_user"}), '"type" must be "service_account"'),
        ("_json_key", _without("type"), '"type" must be "service_account"'),
        ("_json_key", _without("client_email"), "missing client_email"),
        ("_json_key", _without("private_key"), "missing private_key"),
        ("_json_key", json.dumps({**KEY, "private_key": ""}), "missing private_key"),
        ("_json_key", json.dumps({"type": "service_account"}), "missing client_email, private_key"),
        ("_json_key_base64", f"{SENTINEL}!!", "must be a base64-encoded service-account key"),
        ("_json_key_base64", base64.b64encode(b"\xff\xfe").decode(), "base64"),
        ("_json_key_base64", _b64(f"not json {SENTINEL}"), "decoded password is not valid JSON"),
        ("_json_key_base64", _b64(_without("private_key")), "missing private_key"),
    ],
)
def test_bad_google_keys(username: str, password: str, fragment: str) -> None:
    check = check_basic_credentials(GAR, username, password)
    assert not check.ok
    assert [e.field for e in check.errors] == ["auth.password"]
    assert fragment in check.errors[0].message
    assert all(SENTINEL not in m for m in _messages(check))
    assert check.password == password  # untouched when rejected


def test_google_access_token_user_is_left_alone() -> None:
    check = check_basic_credentials(GAR, "oauth2accesstoken", "ya29.token")
    assert check == CredentialCheck(errors=[], warnings=[], password="ya29.token")


def test_json_key_username_outside_google_warns() -> None:
    check = check_basic_credentials("ghcr.io", "_json_key", "ghp_x")
    assert check.errors == []
    assert any("only understood by Google registries" in w for w in check.warnings)


def test_ecr_basic_auth_warns_about_expiry() -> None:
    check = check_basic_credentials(ECR, "AWS", SENTINEL)
    assert check.errors == []
    assert len(check.warnings) == 1
    assert "12 hours" in check.warnings[0]
    assert "`vendor` auth type" in check.warnings[0]
    assert check.password == SENTINEL
    assert all(SENTINEL not in m for m in _messages(check))


def test_ecr_with_access_key_username_warns_twice() -> None:
    check = check_basic_credentials(ECR, "AKIAIOSFODNN7EXAMPLE", SENTINEL)
    assert len(check.warnings) == 2
    assert "IAM access keys cannot be used" in check.warnings[1]


@pytest.mark.parametrize(
    ("password", "warns"),
    [
        ("ghp_" + "a" * 36, False),
        ("github_pat_" + "a" * 82, False),
        ("ghs_" + SENTINEL, True),
        ("gho_" + SENTINEL, True),
        (SENTINEL, True),
    ],
)
def test_ghcr_wants_a_personal_access_token(password: str, warns: bool) -> None:
    check = check_basic_credentials("ghcr.io", "octocat", password)
    assert check.errors == []
    assert bool(check.warnings) == warns
    if warns:
        assert "personal access token" in check.warnings[0]
        assert "GITHUB_TOKEN" in check.warnings[0]
    assert all(SENTINEL not in m and "ghs_" not in m for m in _messages(check))


def test_plain_registry_has_no_findings() -> None:
    assert check_basic_credentials("docker.io", "me", SENTINEL) == CredentialCheck([], [], SENTINEL)


def test_empty_fields() -> None:
    check = check_basic_credentials("docker.io", "", "")
    assert check.errors == [
        FieldError("auth.username", "username is empty"),
        FieldError("auth.password", "password is empty"),
    ]


def test_password_is_not_in_repr() -> None:
    check = check_basic_credentials("docker.io", "me", SENTINEL)
    assert SENTINEL not in repr(check)
