"""The tenancy matrix, generated: every operation, by every kind of caller, on both orgs' objects.

Both `make chaos` (chaos/tenancy.py, which builds the two orgs and runs it) and the e2e test
(tests/e2e/test_tenancy_matrix.py) use this module, so the matrix a test asserts on is the one
chaos counts breaches over. This part is pure: it reads the `/openapi.json` documents and says,
for each cell, what the answer must be; chaos/tenancy.py sends the requests.

Rows are the operations the documents declare, with what they need (`x-landfall-auth`); `none`
(health, the enrollment) and `ci` (the webhook, which has tests of its own) are left out. Columns
are the callers of `CALLERS` and the targets: A's objects, B's objects, and `mixed` (B's org in
the path with an id of A's, or an id of A's in a body under B's path), or `any` for the paths
that name no org and no id (`POST /v1/orgs`).

The rules, in API.md's order (`expected`): no, a revoked or an expired key → 401; a CI token →
403; an org key on another org's object (by path or by id) → 404; a route only the platform may
call → 403; a role below what the route needs → 403; otherwise the caller gets what the platform
gets for the same request on the same kind of object (None here: the platform's answer is the
comparison point). The platform itself is only held to "no 5xx" and, on `mixed`, to 404: an id
is looked up within the path's org for everyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from libs.contracts.identity import Role, role_allows

Caller = Literal[
    "platform", "owner", "developer", "viewer", "owner-b", "revoked", "expired", "none", "ci-token"
]
CALLERS: Final[tuple[Caller, ...]] = (
    "platform",
    "owner",
    "developer",
    "viewer",
    "owner-b",
    "revoked",
    "expired",
    "none",
    "ci-token",
)
Target = Literal["a", "b", "mixed", "any"]
SERVICES: Final = ("credentials", "orchestrator", "webhook_gateway", "data_plane_agent")
SKIPPED_NEEDS: Final = frozenset({"none", "ci"})
# Operations whose body names an id of the org (a data plane, a registry): `mixed` aims A's there.
BODY_REFERENCES: Final = frozenset(
    {
        "POST /v1/orgs/{org}/environments",
        "POST /v1/orgs/{org}/projects/{project}/components",
        "PATCH /v1/orgs/{org}/projects/{project}/components/{component}",
    }
)
REFUSED_REFERENCE: Final = (403, 404, 422)  # an unknown reference in a body may be a 422 naming it


@dataclass(frozen=True, slots=True)
class Operation:
    service: str
    method: str
    template: str
    need: str
    has_body: bool

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def scoped(self) -> bool:
        """Whether the path names something of one org (its name, or an id only it holds)."""
        return "{org}" in self.template or "{id}" in self.template


@dataclass(frozen=True, slots=True)
class Cell:
    operation: Operation
    caller: Caller
    target: Target
    expected: tuple[int, ...] | None  # None: what the platform gets for the same request

    @property
    def changes(self) -> bool:
        return self.operation.method != "GET"


def operations(documents: dict[str, dict[str, Any]]) -> list[Operation]:
    """Every operation of every service's document that a management caller may reach."""
    found: list[Operation] = []
    for service, document in documents.items():
        for template, methods in document.get("paths", {}).items():
            for method, operation in methods.items():
                need = operation.get("x-landfall-auth", "platform")
                if need in SKIPPED_NEEDS:
                    continue
                found.append(
                    Operation(service, method.upper(), template, need, bool(operation.get("requestBody")))
                )
    return found


def caller_org(caller: Caller) -> Literal["a", "b"]:
    return "b" if caller == "owner-b" else "a"


def caller_role(caller: Caller) -> Role:
    if caller in ("owner", "owner-b"):
        return "owner"
    if caller == "developer":
        return "developer"
    return "viewer"


def expected(operation: Operation, caller: Caller, target: Target) -> tuple[int, ...] | None:
    """The answer a cell must get (a tuple of statuses), or None for "what the platform gets"."""
    if caller in ("none", "revoked", "expired"):
        return (401,)
    if caller == "ci-token":
        return (403,)
    if target == "mixed":
        return REFUSED_REFERENCE if operation.key in BODY_REFERENCES else (404,)
    if caller == "platform":
        return None
    if operation.scoped and target != caller_org(caller):
        return (404,)
    if operation.need == "platform":
        return (403,)
    needed = cast(Role, operation.need)  # one of ROLES: `none`, `ci` and `platform` are handled above
    if not role_allows(caller_role(caller), needed):
        return (403,)
    return None


def targets(operation: Operation) -> tuple[Target, ...]:
    if not operation.scoped:
        return ("any",)
    mixed = "{org}" in operation.template and (
        "{id}" in operation.template or operation.key in BODY_REFERENCES
    )
    return ("a", "b", "mixed") if mixed else ("a", "b")


def cells(documents: dict[str, dict[str, Any]]) -> Iterator[Cell]:
    """The whole matrix; on `mixed` only the platform and B's owner (whose own path it is)."""
    for operation in operations(documents):
        for target in targets(operation):
            for caller in CALLERS:
                if target == "mixed" and caller not in ("platform", "owner-b"):
                    continue
                yield Cell(operation, caller, target, expected(operation, caller, target))
