"""Following a deployment (or a run) until it is final, through restarts, within a deadline.

`follow` asks `poll(wait_seconds)` for the current state again and again: with a CI token that
is the gateway's long-poll (`GET /v1/webhooks/deployments/{id}?wait=N`, which answers as soon
as the status is final), with an admin token or org key a plain `GET /v1/deployments/{id}` at a
growing interval. A connection refused or dropped, a 502/503/504 or a 429 while following is not
the end: the loop backs off (0.2 s doubling to 2 s, or the server's Retry-After) and asks again
until the deadline, which ends it with exit code 5.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from libs.cli.client import TRANSIENT_ERRORS, TRANSIENT_STATUSES, ApiError
from libs.cli.errors import UNAVAILABLE, CliError
from libs.cli.transport import ConnectFailed, TimedOutError

DEPLOYMENT_FINAL: Final = frozenset({"succeeded", "failed", "superseded"})
EXECUTION_FINAL: Final = frozenset({"succeeded", "failed"})
LONG_POLL_CHUNK: Final = 5  # seconds per long-poll: short enough to show intermediate statuses
BACKOFF_START: Final = 0.2
BACKOFF_MAX: Final = 2.0


@dataclass
class Clock:
    """Monotonic time and sleep, replaceable in unit tests."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Followed:
    state: dict[str, Any]
    changes: list[tuple[float, str]] = field(default_factory=list)
    retries: int = 0


class TimedOut(CliError):
    def __init__(self, what: str, timeout: float, last: str | None) -> None:
        super().__init__(
            UNAVAILABLE,
            f"error: {what} is not final after {timeout:g} s (last status: {last or 'unknown'})\n"
            "  next: run `landfall status ID --wait` to keep waiting, or raise --timeout",
        )
        self.last = last


def _retry_after(exc: ApiError, fallback: float) -> float:
    try:
        return max(0.05, min(float(exc.retry_after or fallback), BACKOFF_MAX * 2))
    except ValueError:
        return fallback


def follow(
    poll: Callable[[int], dict[str, Any]],
    *,
    what: str,
    timeout: float,
    final: frozenset[str] = DEPLOYMENT_FINAL,
    on_change: Callable[[str, dict[str, Any]], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    long_poll: bool = True,
    clock: Clock | None = None,
) -> Followed:
    """Poll until `state["status"]` is in `final`; raise TimedOut at the deadline."""
    clock = clock or Clock()
    deadline = clock.now() + timeout
    last: str | None = None
    backoff = BACKOFF_START
    interval = 0.05  # plain polling: start fast (rollouts often take milliseconds), then slow down
    result: Followed | None = None
    retries = 0
    while True:
        remaining = deadline - clock.now()
        if remaining <= 0:
            raise TimedOut(what, timeout, last)
        wait = max(0, min(LONG_POLL_CHUNK, math.floor(remaining))) if long_poll else 0
        try:
            state = poll(wait)
        except ApiError as exc:
            if exc.status not in TRANSIENT_STATUSES:
                raise
            delay = _retry_after(exc, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            retries += 1
            if on_retry:
                on_retry(f"HTTP {exc.status}; retrying in {delay:.1f} s")
        except TRANSIENT_ERRORS as exc:
            delay = backoff
            backoff = min(backoff * 2, BACKOFF_MAX)
            retries += 1
            if on_retry:
                on_retry(f"{_describe(exc)}; retrying in {delay:.1f} s")
        else:
            backoff = BACKOFF_START
            status = str(state.get("status") or "unknown")
            if result is None:
                result = Followed(state)
            result.state = state
            result.retries = retries
            if status != last:
                result.changes.append((clock.now(), status))
                if on_change:
                    on_change(status, state)
                last = status
            if status in final:
                return result
            if wait > 0:
                continue  # the long-poll itself waited
            delay = interval
            interval = min(interval * 2, 1.0)
        remaining = deadline - clock.now()
        if remaining <= 0:
            raise TimedOut(what, timeout, last)
        clock.sleep(min(delay, remaining))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ConnectFailed):
        return "Landfall is not reachable (connection refused or dropped)"
    if isinstance(exc, TimedOutError):
        return "no answer in time"
    return f"the connection broke ({type(exc).__name__})"
