"""What goes where: results on standard output (a table, or with `-o json` the API's JSON and
nothing else), progress and errors on standard error."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # Not a terminal (a pipe, CI's log): no colours, and wide enough that nothing wraps or is cut.
    return Console(file=stream, width=None if tty else 250, no_color=not tty, highlight=False, soft_wrap=True)


class Output:
    def __init__(self, fmt: str = "table") -> None:
        self.json = fmt == "json"
        self.out = _console(stderr=False)
        self.err = _console(stderr=True)

    # --- standard output ---------------------------------------------------------------------
    def document(self, doc: Any) -> None:
        """The API's JSON, as one document."""
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """A line of the result for people (never in json mode)."""
        self.out.print(Text(text))

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing yet"
    ) -> None:
        rows = list(rows)
        if not rows:
            self.err.print(Text(empty))
            return
        table = Table(*columns, box=None, header_style="bold", pad_edge=False)
        for row in rows:
            table.add_row(*(Text(cell(value)) for value in row))
        self.out.print(table)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        self.table(("FIELD", "VALUE"), [(k, v) for k, v in pairs if v not in (None, "", [], {})])

    # --- standard error ----------------------------------------------------------------------
    def note(self, text: str) -> None:
        self.err.print(Text(text))


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    return str(value)


def when(value: Any) -> str:
    """An API timestamp, shorter: 2026-11-27 04:30:55."""
    if not isinstance(value, str):
        return cell(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def image_with_digest(deployment: dict[str, Any]) -> str:
    image = str(deployment.get("image") or "?")
    digest = deployment.get("digest")
    if digest and "@" not in image:
        return f"{image}@{digest}"
    return image
