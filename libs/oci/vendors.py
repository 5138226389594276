"""Which registry vendor a host belongs to, and the vendor-specific rules for its credentials.

Why this exists: the same "username + password" means very different things per vendor.
Google wants a service-account key as the password (`_json_key`), Amazon ECR hands out
passwords that die after 12 hours, GHCR needs a personal access token, and the cloud
vendors can instead be reached with the cluster's own IAM identity (the `vendor` auth
type). Catching these mistakes when credentials are saved beats a pod stuck in
ImagePullBackOff hours later. One small section per vendor, Keel style.

What is subtle:

* Hosts are compared after `canonical_host` (lowercase, no scheme, Docker Hub aliases
  folded) and never with a port: vendor registries are only served on 443.
* The ECR pattern is the one Kubernetes' own ECR credential provider
  (kubernetes/cloud-provider-aws, `ecrPrivateHostPattern`) matches: `.dkr.ecr.` and
  FIPS `.dkr.ecr-fips.`, the dual-stack `.dkr-ecr.<region>.on.aws` form, China
  (`amazonaws.com.cn`), the European Sovereign Cloud (`amazonaws.eu`) and the isolated
  partitions. ECR Public (`public.ecr.aws`) is not a private ECR registry.
* ACR login servers may carry a domain-name-label hash (`name-abc123.azurecr.io`), and the
  sovereign clouds use `azurecr.cn` and `azurecr.us`.
* `_json_key` passwords are re-serialised exactly as `jq -c` would (key order kept,
  non-ASCII kept) so what we store is what the user would have produced by hand.
* No message ever contains any part of a password; `CredentialCheck.password` is kept
  out of `repr` so the result can be logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Final, Literal

from libs.oci.reference import DOCKER_HUB, canonical_host

Vendor = Literal["azure", "gcp", "aws"]

PASSWORD_FIELD: Final = "auth.password"
USERNAME_FIELD: Final = "auth.username"


# --- Docker Hub ------------------------------------------------------------------------------------------


def is_docker_hub(host: str) -> bool:
    return canonical_host(host) == DOCKER_HUB


# --- GitHub Container Registry ---------------------------------------------------------------------------

GHCR_HOST: Final = "ghcr.io"
# Classic and fine-grained personal access tokens; both are long-lived.
GHCR_PAT_PREFIXES: Final = ("ghp_", "github_pat_")


def is_ghcr(host: str) -> bool:
    return canonical_host(host) == GHCR_HOST


# --- Google: Artifact Registry and Container Registry ----------------------------------------------------

GCP_PATTERN: Final = "<location>-docker.pkg.dev, gcr.io or <region>.gcr.io"
_GCP_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*-docker\.pkg\.dev|(?:[a-z0-9-]+\.)?gcr\.io", re.ASCII)
GCP_JSON_KEY_USER: Final = "_json_key"
GCP_JSON_KEY_BASE64_USER: Final = "_json_key_base64"


def is_gcp(host: str) -> bool:
    return _GCP_RE.fullmatch(canonical_host(host)) is not None


# --- Azure Container Registry ----------------------------------------------------------------------------

AZURE_PATTERN: Final = "<registry>.azurecr.io"
_AZURE_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+azurecr\.(?:io|cn|us)", re.ASCII)


def is_azure(host: str) -> bool:
    return _AZURE_RE.fullmatch(canonical_host(host)) is not None


# --- Amazon ECR (private) --------------------------------------------------------------------------------

AWS_PATTERN: Final = "<12-digit account id>.dkr.ecr.<region>.amazonaws.com"
_AWS_ECR_RE = re.compile(
    r"(?P<account>[0-9]{12})\.dkr[.-]ecr(?P<fips>-fips)?\.(?P<region>[a-z0-9][a-z0-9-]*)\."
    r"(?:amazonaws\.com(?:\.cn)?|amazonaws\.eu|on\.aws|on\.amazonwebservices\.com\.cn"
    r"|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)",
    re.ASCII,
)
AWS_ECR_USER: Final = "AWS"


def is_aws_ecr(host: str) -> bool:
    return _AWS_ECR_RE.fullmatch(canonical_host(host)) is not None


# --- Dispatch --------------------------------------------------------------------------------------------

_VENDOR_CHECKS: Final = {"azure": is_azure, "gcp": is_gcp, "aws": is_aws_ecr}
_VENDOR_NAMES: Final = {
    "azure": ("an Azure Container Registry host", AZURE_PATTERN),
    "gcp": ("a Google Artifact Registry or Container Registry host", GCP_PATTERN),
    "aws": ("an Amazon ECR private registry host", AWS_PATTERN),
}


def vendor_for_host(host: str) -> Vendor | None:
    """The cloud vendor whose IAM identity can pull from `host`, if any."""
    if is_azure(host):
        return "azure"
    if is_gcp(host):
        return "gcp"
    if is_aws_ecr(host):
        return "aws"
    return None


def check_vendor_host(vendor: str, host: str) -> str | None:
    """None when `host` belongs to `vendor`, else a message naming the expected host pattern."""
    check = _VENDOR_CHECKS.get(vendor)
    if check is None:
        return f"unknown vendor {vendor!r}; expected one of: {', '.join(_VENDOR_CHECKS)}"
    if check(host):
        return None
    label, pattern = _VENDOR_NAMES[vendor]
    return f"registry host {canonical_host(host)!r} is not {label}; expected {pattern}"


# --- Basic credentials -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """Errors block saving; warnings are shown; `password` is what to store (possibly re-encoded)."""

    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    password: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors


def _non_empty_string(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _service_account_key(text: str) -> tuple[str | None, str]:
    """(error, minified JSON) for a Google service-account key; never echoes the key."""
    try:
        key = json.loads(text)
    except json.JSONDecodeError as exc:
        # Position only: the exception's own text is safe, but the document must not leak.
        return f"is not valid JSON (line {exc.lineno}, column {exc.colno})", ""
    if not isinstance(key, dict):
        return "must be a JSON object (a service-account key file)", ""
    if key.get("type") != "service_account":
        return 'is not a service-account key: "type" must be "service_account"', ""
    missing = [name for name in ("client_email", "private_key") if not _non_empty_string(key.get(name))]
    if missing:
        return f"is not a complete service-account key: missing {', '.join(missing)}", ""
    return None, json.dumps(key, separators=(",", ":"), ensure_ascii=False)


def _check_gcp(username: str, password: str, errors: list[FieldError]) -> str:
    if username == GCP_JSON_KEY_USER:
        problem, minified = _service_account_key(password)
        if problem is not None:
            message = f"with username {GCP_JSON_KEY_USER} the password {problem}"
            errors.append(FieldError(PASSWORD_FIELD, message))
            return password
        return minified
    if username == GCP_JSON_KEY_BASE64_USER:
        compact = "".join(password.split())  # `base64` wraps at 76 columns unless told -w0
        try:
            text = base64.b64decode(compact, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            errors.append(
                FieldError(
                    PASSWORD_FIELD,
                    f"with username {GCP_JSON_KEY_BASE64_USER} the password must be a base64-encoded "
                    "service-account key file",
                )
            )
            return password
        problem, minified = _service_account_key(text)
        if problem is not None:
            message = f"with username {GCP_JSON_KEY_BASE64_USER} the decoded password {problem}"
            errors.append(FieldError(PASSWORD_FIELD, message))
            return password
        return base64.b64encode(minified.encode("utf-8")).decode("ascii")
    return password


def check_basic_credentials(host: str, username: str, password: str) -> CredentialCheck:
    """Vendor rules for a username/password pair; see the module docstring."""
    errors: list[FieldError] = []
    warnings: list[str] = []
    if username == "":
        errors.append(FieldError(USERNAME_FIELD, "username is empty"))
    if password == "":
        errors.append(FieldError(PASSWORD_FIELD, "password is empty"))
    if errors:
        return CredentialCheck(errors=errors, warnings=warnings, password=password)

    if is_gcp(host):
        password = _check_gcp(username, password, errors)
    elif username in (GCP_JSON_KEY_USER, GCP_JSON_KEY_BASE64_USER):
        warnings.append(
            f"the username {username} is only understood by Google registries ({GCP_PATTERN}); "
            f"{canonical_host(host)!r} will treat it as an ordinary user name"
        )

    if is_aws_ecr(host):
        warnings.append(
            "Amazon ECR passwords (from `aws ecr get-login-password`) expire after 12 hours and must then "
            "be renewed by hand; prefer the `vendor` auth type, which pulls with the cluster's IAM identity"
        )
        if username != AWS_ECR_USER:
            warnings.append(
                f"Amazon ECR expects the username {AWS_ECR_USER} with a password from "
                "`aws ecr get-login-password`; IAM access keys cannot be used as registry credentials"
            )

    if is_ghcr(host) and not password.startswith(GHCR_PAT_PREFIXES):
        warnings.append(
            "the password for ghcr.io does not look like a GitHub personal access token (classic or "
            "fine-grained) with the read:packages scope; a GitHub Actions GITHUB_TOKEN stops working "
            "when the job that issued it ends"
        )
    return CredentialCheck(errors=errors, warnings=warnings, password=password)
