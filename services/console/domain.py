"""What the console knows without asking anyone: sessions, roles, the product's labels, pipelines.

Pure (no I/O, no HTTP). The labels here are the product's own words: users and the browser test
look for them, so they change only with the documentation.

What is subtle
--------------
* A session holds the person's API key (to call the API on their behalf) only in memory, as a
  `SecretStr`, and never in the cookie: the cookie is a random id that means nothing elsewhere.
* The role a session shows buttons for is the role the API reported at sign-in; the API still
  decides every change (a key whose role was lowered since is refused with 403, shown as such).
* `latest_per_environment` reads the history (newest first): the first deployment of an
  environment is what happens there now (maybe failing), the first `succeeded` one is what runs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import SecretStr

from libs.contracts.identity import Role, role_allows

AUTH_TYPES: Final[dict[str, str]] = {
    "anonymous": "Public (anonymous) access",
    "basic": "Basic authentication",
    "docker-config": "Docker config",
    "vendor": "Vendor-specific authentication",
}
COMPONENT_TYPES: Final[dict[str, str]] = {
    "service": "Service",
    "web-application": "Web application",
    "scheduled-task": "Scheduled task",
    "manual-task": "Manual task",
}
VENDORS: Final[dict[str, str]] = {
    "azure": "Azure Container Registry (the cluster's managed identity)",
    "gcp": "Google Artifact Registry / GCR (Workload Identity)",
    "aws": "Amazon ECR (the nodes' IAM role)",
}
# The vendor guidance, shown beside the registry form (the credentials service checks the same rules).
GUIDANCE: Final[tuple[tuple[str, str], ...]] = (
    (
        "Docker Hub",
        "Host registry.hub.docker.com (docker.io and index.docker.io are the same registry). "
        "Use an access token as the password, not your account password.",
    ),
    (
        "Google Artifact Registry",
        "Host <location>-docker.pkg.dev (or gcr.io). Username _json_key, password the service "
        "account's JSON key on one line: jq -c . key.json",
    ),
    (
        "Amazon ECR",
        "Passwords from aws ecr get-login-password expire after 12 hours: use Vendor-specific "
        "authentication (the nodes' IAM role) instead of Basic authentication.",
    ),
    (
        "GitHub Container Registry",
        "Host ghcr.io. Username your GitHub user, password a personal access token (ghp_… or "
        "github_pat_…) with read:packages.",
    ),
    (
        "Azure Container Registry",
        "Host <name>.azurecr.io. Username a service principal's application (client) id, password "
        "its secret; or Vendor-specific authentication with the cluster's managed identity.",
    ),
)
STATUS_FINAL: Final = frozenset({"succeeded", "failed", "superseded"})
_TAG: Final = re.compile(r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class SignInRefused(Exception):
    """The key was not accepted for the org (the message says why, without the key)."""


@dataclass
class Session:
    id: str
    key: SecretStr
    org: str
    role: Role
    key_name: str
    csrf: str
    created_at: float
    last_used_at: float

    def may(self, need: Role) -> bool:
        return role_allows(self.role, need)

    @property
    def developer(self) -> bool:
        return self.may("developer")

    @property
    def owner(self) -> bool:
        return self.may("owner")


def expired(session: Session, *, now: float, ttl: float, idle: float) -> bool:
    return now - session.created_at >= ttl or now - session.last_used_at >= idle


def pinned_image(image: str, digest: str | None) -> str:
    """The reference that redeploys exactly this image: `host/repository@digest` (tag dropped)."""
    if not digest:
        return image
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    last[-1] = _TAG.sub("", last[-1])
    return "/".join(last) + "@" + digest


@dataclass
class Stage:
    """One environment of the pipeline: what runs there and what happens there now."""

    name: str
    order: int
    running: Mapping[str, Any] | None = None
    latest: Mapping[str, Any] | None = None
    next: str | None = None
    history: list[Mapping[str, Any]] = field(default_factory=list)


def pipeline(environments: Iterable[Mapping[str, Any]], history: Iterable[Mapping[str, Any]]) -> list[Stage]:
    """The environments in pipeline order, each with its newest and its running deployment."""
    stages = [Stage(name=e["name"], order=e["order"]) for e in sorted(environments, key=lambda e: e["order"])]
    by_name = {s.name: s for s in stages}
    for deployment in history:
        stage = by_name.get(deployment.get("environment", ""))
        if stage is None:
            continue
        stage.history.append(deployment)
        if stage.latest is None:
            stage.latest = deployment
        if stage.running is None and deployment.get("status") == "succeeded":
            stage.running = deployment
    for here, after in itertools.pairwise(stages):
        here.next = after.name
    return stages


def field_errors(errors: Iterable[Mapping[str, Any]], *, known: Iterable[str]) -> dict[str, str]:
    """A problem document's `errors`, keyed by the form's own field names; the rest under `""`.

    The API names fields by their JSON path (`auth.password`, `body`); a form field carries the same
    name, so most errors land beside their field. One the form has no field for is shown on top."""
    names = set(known)
    out: dict[str, str] = {}
    for error in errors:
        name = str(error.get("field", ""))
        message = str(error.get("message", ""))
        where = name if name in names else ""
        if where == "" and name and name not in ("body", ""):
            message = f"{name}: {message}"
        out[where] = f"{out[where]}; {message}" if where in out else message
    return out
