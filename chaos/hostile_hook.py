"""Loaded by `st` itself (`SCHEMATHESIS_HOOKS=<this file>`), never imported by Landfall: it logs st's errors.

schemathesis' JSON report names an error by its title only ("Runtime Error", "Network Error"), and
"Runtime Error" is any exception schemathesis could not classify: hypothesis' own
`FlakyStrategyDefinition` raised while generating (the tool's fault, upstream issue, schemathesis
PR 3834) reads the same as anything else. The checker (`chaos.hostile_verdict`) has to tell a
tool error from a service's, so this handler writes one JSON line per error event with what
the report leaves out: the exception's qualified type (and those inside an exception group),
its message, the operation and phase, and schemathesis' own test for hypothesis' "inconsistent
replay" assertion.

Subtle:
- It is loaded from its path (`_load_from_file`), as a module of its own: it may import only
  schemathesis, hypothesis and the standard library, not `chaos`.
- `handler()` returns None, so it is called, not used as a decorator (the class keeps its name).
- It writes a `started` line first: a log without one means the hook was not loaded, and the
  checker then trusts none of it (every error counts against the service).
- A fatal error's title is the one the JSON report gives it, so the two can be reconciled.
"""

from __future__ import annotations

import json
import os
from typing import Any

from schemathesis.cli import handler
from schemathesis.cli.commands.run.handlers.base import EventHandler
from schemathesis.engine import events
from schemathesis.engine.errors import is_inconsistent_replay

ENV = "LANDFALL_ST_ERROR_LOG"
MESSAGE_CHARS = 500


def _types(exc: BaseException) -> list[str]:
    """The qualified type of `exc`, or of every leaf of an exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [name for inner in exc.exceptions for name in _types(inner)]
    cls = type(exc)
    return [f"{cls.__module__}.{cls.__qualname__}"]


def _fatal_title(exc: Exception) -> str:
    try:
        from schemathesis.cli.json_report import _fatal_error_title

        return str(_fatal_error_title(events.FatalError(exception=exc)))
    except Exception:  # a private helper: its absence must not break the log
        return "Test Execution Error"


class ErrorLog(EventHandler[Any]):
    """One JSON line per `NonFatalError` / `FatalError`, to the file named by `$LANDFALL_ST_ERROR_LOG`."""

    def __init__(self, *args: Any, **params: Any) -> None:
        self.path = os.environ.get(ENV, "")

    def _write(self, record: dict[str, Any]) -> None:
        if self.path:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

    def start(self, ctx: Any) -> None:
        self._write({"kind": "started"})

    def handle_event(self, ctx: Any, event: events.EngineEvent) -> None:
        if isinstance(event, events.NonFatalError):
            exc: Exception = event.value
            title = event.info.title
            fatal = False
            label, phase = event.label, event.phase.value if event.phase is not None else None
        elif isinstance(event, events.FatalError):
            exc, title, fatal, label, phase = event.exception, _fatal_title(event.exception), True, "", None
        else:
            return
        self._write(
            {
                "kind": "error",
                "fatal": fatal,
                "title": title,
                "types": _types(exc),
                "message": str(exc)[:MESSAGE_CHARS],
                "label": label,
                "phase": phase,
                "inconsistent_replay": bool(is_inconsistent_replay(exc)),
            }
        )


handler()(ErrorLog)
