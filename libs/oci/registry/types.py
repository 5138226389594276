"""What a registry call needs and what a check answers, without I/O (the credentials domain uses them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Credentials:
    """A stored username and password, as a registry's login wants them."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to "test connection": a plain sentence that never holds a secret."""

    ok: bool
    detail: str
