"""Exit codes (CLI.md's table) and the one exception every command raises to stop with one."""

from __future__ import annotations

from typing import Final

OK: Final = 0
FAILED: Final = 1  # with --wait: the deployment, promotion or run ended failed or superseded
USAGE: Final = 2  # an unknown command or flag, a missing argument (Click's own code too)
REFUSED: Final = 3  # 401 or 403
NOT_FOUND: Final = 4  # 404
UNAVAILABLE: Final = 5  # 503, connection refused, or the wait ran out
INVALID: Final = 6  # 409, 413, 415 or 422


class CliError(Exception):
    """Stop with `code`, telling the person `message` (already free of secrets) on standard error.

    A plain class, not a dataclass: every run imports it, and making a dataclass costs start-up.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


def usage(message: str) -> CliError:
    return CliError(USAGE, message)


def exit_code_for_status(status: int) -> int:
    """The exit code of CLI.md for an HTTP error status."""
    if status in (401, 403):
        return REFUSED
    if status in (404, 405):  # 405: this Landfall has no such endpoint (yet)
        return NOT_FOUND
    if status in (400, 409, 413, 415, 422):
        return INVALID
    if status == 429 or status >= 500:
        return UNAVAILABLE
    return FAILED
