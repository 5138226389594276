"""Errors that cross layers: problems for clients and unavailable dependencies.

Handlers raise `ProblemError` for anything a client did wrong (rendered as an
RFC 9457 problem document) and adapters raise `DependencyUnavailable` when
Vault, NATS or PostgreSQL cannot be reached (rendered as 503 + Retry-After).
Anything else is a bug: 500, logged with its traceback, never with request data.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://landfall.dev/problems/"


class DependencyUnavailable(Exception):
    """A dependency (Vault, NATS, PostgreSQL, another service) is down: retry later."""

    retry_after_seconds = 2


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc


def not_found(what: str) -> ProblemError:
    return ProblemError(404, "Not Found", f"{what} does not exist", kind="not-found")


def conflict(detail: str) -> ProblemError:
    return ProblemError(409, "Conflict", detail, kind="conflict")


def invalid(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "Validation Failed",
        f"{field}: {message}",
        kind="validation-failed",
        errors=[{"field": field, "message": message}],
    )
