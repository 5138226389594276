"""Errors that cross layers, and what each one means to a caller.

Three families, so that no layer below the entry points needs to know HTTP:

* **Domain errors** (`Invalid`, `NotFound`, `Conflict`, `Forbidden`): raised by
  domain code and use cases. One middleware (`libs.runtime.http`) turns each
  into an RFC 9457 problem document (422, 404, 409, 403); `Bus.serve` turns
  them into typed RPC errors. They never carry request data beyond what the
  caller sent in the first place (no secrets: callers never put one in).
* **`DependencyUnavailable`**: Vault, NATS, PostgreSQL or another service cannot
  be reached. HTTP answers 503 + Retry-After; consumers nak and retry; RPCs
  answer `unavailable`.
* **Reconcile outcomes** (`Waiting`, `Stalling`, after Flux's
  `internal/error`): a step that cannot finish now says whether it will retry
  later (`Waiting`, with a delay) or needs a person (`Stalling`); the reason is
  one of `libs.contracts.reasons`.

`ProblemError` stays for the entry points themselves (HTTP-only outcomes such as
415, 413 or 429): it is the rendered form, not a domain concept.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://landfall.dev/problems/"


class DependencyUnavailable(Exception):
    """A dependency (Vault, NATS, PostgreSQL, another service) is down: retry later."""

    retry_after_seconds = 2


# --- domain errors ----------------------------------------------------------------------------


class DomainError(Exception):
    """Something the caller asked for cannot be done; the message is safe to show them."""

    status = 400
    title = "Bad Request"
    kind = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def errors(self) -> list[dict[str, str]]:
        return []


class Invalid(DomainError):
    """A value failed validation: `field` is the caller's name for it (a dotted path)."""

    status = 422
    title = "Validation Failed"
    kind = "validation-failed"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def errors(self) -> list[dict[str, str]]:
        return [{"field": self.field, "message": self.message}]


class NotFound(DomainError):
    """The object does not exist (or belongs to another tenant, which must look the same)."""

    status = 404
    title = "Not Found"
    kind = "not-found"

    def __init__(self, what: str, *, detail: str | None = None) -> None:
        super().__init__(detail or f"{what} does not exist")
        self.what = what


class Conflict(DomainError):
    """The request collides with the current state (a duplicate name, an object in use)."""

    status = 409
    title = "Conflict"
    kind = "conflict"


class Forbidden(DomainError):
    """The caller is known but may not do this; the detail says what would allow it."""

    status = 403
    title = "Forbidden"
    kind = "forbidden"


# --- reconcile outcomes -----------------------------------------------------------------------


class Waiting(Exception):
    """Not now: leave the work where it is and try again after `delay` seconds."""

    def __init__(self, reason: str | None, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Stalling(Exception):
    """Never, as things are: record the failure with `reason` and a message for a person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


# --- the rendered form ------------------------------------------------------------------------


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

    @classmethod
    def from_domain(cls, exc: DomainError) -> ProblemError:
        return cls(exc.status, exc.title, exc.detail, kind=exc.kind, errors=exc.errors())

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
