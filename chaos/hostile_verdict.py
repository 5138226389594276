"""The hostile part's verdict: a service's failures fail it, the fuzzer's own errors only past a bound.

What fails a service, always: a 5xx (counted by the service's own metric), a schemathesis failure
(a response off its document, a broken consistency check), a hostile shape answered with a 5xx,
any error schemathesis reports that is not the tool's own (a connection reset or refused, a
timeout, "Unhealthy API", a document that does not load, st crashing or exiting with an unknown
code), and fewer requests than the floor.

What is the tool's own, a *tool error*: an exception hypothesis raises inside schemathesis while
*generating* a case, before any request of it is sent: `FlakyStrategyDefinition` ("inconsistent data
generation", schemathesis PR 3834 fixed one case of it), `FlakyReplay`, and the assertion hypothesis'
data tree makes on an inconsistent replay (schemathesis' own `is_inconsistent_replay`). Not
`FlakyFailure`: that is a *response* that failed once and not on replay, the service's behaviour.
An exception group counts as a tool error only when every exception in it is one.

The bound, `TOOL_ERROR_LIMIT`: a fixed 5 per service, not a share of the requests. Seen so far:
1 per 10,000-13,000-request service run. Each one costs one generation session (st fuzz starts
another), not a request, so a share of the requests measures nothing it causes; and 1 % of 10,000
would let 100 through, enough to hide a generator that is broken for one operation every round.
5 leaves room for the longer runs of a busy machine (more fuzz rounds, more sessions); a sixth fails
the part, as does any tool error when the floor is missed. Each is reported (count, types, first
message) in `latest.json` and the printed table, never dropped.

The errors come from `chaos/hostile_hook.py`'s log (one line per error, with its exception type);
schemathesis' JSON report only has titles. The two are reconciled by title: an error the report
counts and the log does not explain (or every error, if the hook was not loaded) is not a tool error.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOOL_ERROR_LIMIT = 5  # per service; why a fixed number: the module docstring
TOOL_ERROR_TYPES = frozenset({"hypothesis.errors.FlakyStrategyDefinition", "hypothesis.errors.FlakyReplay"})


@dataclass(frozen=True)
class StError:
    """One error event of `st`, as the hook logged it."""

    title: str
    types: tuple[str, ...]
    message: str
    label: str = ""
    phase: str | None = None
    fatal: bool = False
    inconsistent_replay: bool = False

    @property
    def is_tool_error(self) -> bool:
        if self.fatal:
            return False
        return self.inconsistent_replay or (
            bool(self.types) and all(t in TOOL_ERROR_TYPES for t in self.types)
        )

    def describe(self) -> str:
        kind = ", ".join(dict.fromkeys(t.rsplit(".", 1)[-1] for t in self.types)) or "?"
        where = f" in {self.label}" if self.label else ""
        return f"{self.title}{where} ({kind}): {self.message}"[:500]


def read_log(path: Path) -> list[StError] | None:
    """The errors the hook logged, or None if it never started (not loaded: trust none of it)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    started, found = False, []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") == "started":
            started = True
        elif record.get("kind") == "error":
            found.append(
                StError(
                    title=str(record.get("title") or ""),
                    types=tuple(str(t) for t in record.get("types") or ()),
                    message=str(record.get("message") or ""),
                    label=str(record.get("label") or ""),
                    phase=record.get("phase"),
                    fatal=bool(record.get("fatal")),
                    inconsistent_replay=bool(record.get("inconsistent_replay")),
                )
            )
    return found if started else None


def split_errors(
    reported: list[dict[str, Any]], logged: list[StError] | None
) -> tuple[list[str], list[StError]]:
    """(errors that count against the service, tool errors) of one st command.

    `reported` is the JSON report's `errors` (`{"title", "count"}`: one per distinct operation and
    exception type); `logged` is the hook's log of the same command (one per event, repeats too).
    """
    if logged is None:
        return [f"{e.get('title') or e} (x{e.get('count', 1)}; no error log from st)" for e in reported], []
    errors = [e.describe() for e in logged if not e.is_tool_error]
    tools = [e for e in logged if e.is_tool_error]
    seen = Counter(e.title for e in logged)
    for e in reported:  # one group per title
        title = str(e.get("title") or e)
        unexplained = int(e.get("count") or 1) - seen[title]
        if unexplained > 0:
            errors.append(f"{title} (x{unexplained}): reported by st, not in its error log")
    return errors, tools


def tool_summary(tools: list[StError]) -> dict[str, Any]:
    """What `latest.json` holds of the tool errors: count, bound, exception types, first message."""
    kinds = Counter(t.rsplit(".", 1)[-1] for e in tools for t in dict.fromkeys(e.types or ("?",)))
    return {
        "count": len(tools),
        "limit": TOOL_ERROR_LIMIT,
        "kinds": dict(sorted(kinds.items())),
        "first": tools[0].describe() if tools else "",
    }


def service_ok(h: dict[str, Any], floor: int) -> bool:
    return not service_problems("", h, floor)


def service_problems(service: str, h: dict[str, Any], floor: int, *, server_errors: bool = True) -> list[str]:
    """Why one service's evidence (`HostileResult.evidence()`, or an older one) fails the part.

    `server_errors=False` leaves the 5xx out: `chaos.run.verdict` counts those itself.
    """
    out = []
    if server_errors and h.get("5xx"):
        out.append(f"hostile {service}: {h['5xx']} 5xx")
    if h.get("failures") or h.get("errors"):
        out.append(
            f"hostile {service}: {len(h.get('failures', []))} failures, {len(h.get('errors', []))} errors"
        )
    tools = h.get("tool_errors") or {}
    if tools.get("count", 0) > TOOL_ERROR_LIMIT:
        out.append(
            f"hostile {service}: {tools['count']} tool errors (schemathesis/hypothesis), more than "
            f"the {TOOL_ERROR_LIMIT} tolerated; first: {tools.get('first', '')[:200]}"
        )
    if h.get("requests", 0) < floor:
        out.append(f"hostile {service}: only {h.get('requests', 0)} requests")
    return out


def problems(hostile: dict[str, Any], floor: int) -> list[str]:
    """`chaos.run.problems`' part for the hostile services (the 5xx are counted in its verdict)."""
    return [
        p for service, h in hostile.items() for p in service_problems(service, h, floor, server_errors=False)
    ]


def render(hostile: dict[str, Any]) -> list[str]:
    lines = ["", "HOSTILE INPUT  (schemathesis; requests and 5xx counted by each service's own metrics)"]
    for service, r in hostile.items():
        tools = r.get("tool_errors") or {}
        lines.append(
            f"  {service:<18} requests {r['requests']:>6}   5xx {r['5xx']}   spec failures "
            f"{len(r['failures'])}   errors {len(r['errors'])}   tool errors {tools.get('count', 0)}"
            f"/{tools.get('limit', TOOL_ERROR_LIMIT)}   ({r['seconds']} s; {r.get('stopped', '?')})"
        )
        if tools.get("first"):
            lines.append(f"    first tool error: {tools['first'][:300]}")
        for error in r["errors"][:3]:
            lines.append(f"    error: {error[:300]}")
    return lines
