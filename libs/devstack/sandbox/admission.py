"""Admission rules: writes a policy webhook in front of the API server denies (or answers wrongly).

Real clusters refuse objects for reasons of their own: Gatekeeper or Kyverno policies, a
ValidatingAdmissionPolicy, a quota. The agent must report such a refusal as `apply_rejected`
and go on with the next command, and report a server that answers nonsense as `agent_error`
rather than hang; these rules let tests make the sandbox do both. A rule matches a write
(POST, PUT, PATCH of an object, not a subresource) whose body names a container image that
contains `image_contains`. It answers `status` with a Status naming the denial, or, when
`answer` is set, `status` with that body instead (a broken webhook or proxy).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from libs.devstack.sandbox.errors import status_body
from libs.devstack.sandbox.values import JsonDict


@dataclasses.dataclass(frozen=True)
class AdmissionRule:
    image_contains: str
    message: str = "denied by policy"
    status: int = 403
    answer: Any = None

    def as_dict(self) -> JsonDict:
        return dataclasses.asdict(self)

    def reply(self) -> tuple[int, Any]:
        if self.answer is not None:
            return self.status, self.answer
        reason = "Forbidden" if self.status == 403 else "Invalid" if self.status == 422 else "BadRequest"
        message = f'admission webhook "policy.sandbox.landfall.dev" denied the request: {self.message}'
        return self.status, status_body(self.status, reason, message)


def images(value: Any) -> list[str]:
    """Every `image` string anywhere in a request body (objects and JSON patches alike)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "image" and isinstance(item, str):
                found.append(item)
            else:
                found += images(item)
    elif isinstance(value, list):
        for item in value:
            found += images(item)
    return found


def decide(rules: list[AdmissionRule], body: Any) -> AdmissionRule | None:
    named = images(body)
    for rule in rules:
        if any(rule.image_contains in image for image in named):
            return rule
    return None


def parse_rule(body: JsonDict) -> AdmissionRule:
    contains = body.get("image_contains")
    if not isinstance(contains, str) or not contains:
        raise ValueError("image_contains must be a non-empty string")
    status = body.get("status", 403)
    if not isinstance(status, int) or not 200 <= status <= 499:
        raise ValueError("status must be an HTTP status from 200 to 499")
    return AdmissionRule(contains, str(body.get("message") or "denied by policy"), status, body.get("answer"))
