"""What goes where: results on standard output (a table, or with `-o json` the API's JSON and
nothing else), progress and errors on standard error.

Rich is imported only to draw a table or a spinner: a `-o json` deploy in CI never loads it.
Once a Rich console on standard error exists (a spinner may be running on it), notes go through
it, so a line of progress never lands in the middle of the spinner.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def _console(stderr: bool) -> Console:
    from rich.console import Console  # lazily: Rich costs start-up time that most commands never need

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # Not a terminal (a pipe, CI's log): no colours, and wide enough that nothing wraps or is cut.
    return Console(file=stream, width=None if tty else 250, no_color=not tty, highlight=False, soft_wrap=True)


class Output:
    def __init__(self, fmt: str = "table") -> None:
        self.json = fmt == "json"
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console(stderr=False)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _console(stderr=True)
        return self._err

    # --- standard output ---------------------------------------------------------------------
    def document(self, doc: Any) -> None:
        """The API's JSON, as one document."""
        sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    def line(self, text: str) -> None:
        """A line of the result for people (never in json mode)."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing yet"
    ) -> None:
        from rich.table import Table
        from rich.text import Text

        rows = list(rows)
        if not rows:
            self.note(empty)
            return
        table = Table(*columns, box=None, header_style="bold", pad_edge=False)
        for row in rows:
            table.add_row(*(Text(cell(value)) for value in row))
        self.out.print(table)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        self.table(("FIELD", "VALUE"), [(k, v) for k, v in pairs if v not in (None, "", [], {})])

    def answer(self, doc: Any, pairs: str | Sequence[tuple[str, Any]], *, notes: Iterable[str] = ()) -> None:
        """One object the API answered: as it is with `-o json`; for people these fields (or the
        fields a `pick` spec names), then the notes on standard error."""
        if self.json:
            self.document(doc)
            return
        self.fields(pick(doc, pairs) if isinstance(pairs, str) else pairs)
        for text in notes:
            self.note(text)

    def listing(
        self,
        doc: dict[str, Any],
        columns: str | Sequence[str],
        row: Callable[[dict[str, Any]], Sequence[Any]] | None = None,
        *,
        empty: str,
    ) -> None:
        """A list the API answered (`{"items": [...]}`): as it is with `-o json`; for people a
        table with a row per item, or `empty` on standard error when there is none. Without `row`,
        `columns` is a `pick` spec: its labels in capitals head the columns."""
        if self.json:
            self.document(doc)
            return
        items = doc.get("items") or []
        rows: list[Sequence[Any]]
        if row is None:
            spec = str(columns)
            columns = [label.upper() for label, _ in pick({}, spec)]
            rows = [[value for _, value in pick(item, spec)] for item in items]
        else:
            rows = [row(item) for item in items]
        self.table(columns, rows, empty=empty)

    # --- standard error ----------------------------------------------------------------------
    def note(self, text: str) -> None:
        if self._err is not None:  # a spinner may be running on it: print through it
            from rich.text import Text

            self._err.print(Text(text))
            return
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def progress(self, what: str) -> tuple[Callable[[str, dict[str, Any]], None], Callable[[str], None]]:
        """Notes for `wait.follow`: each new status, and each retry, stamped with the time."""

        def on_change(status: str, state: dict[str, Any]) -> None:
            self.note(f"{stamp()}  {what}  {status}")

        def on_retry(message: str) -> None:
            self.note(f"{stamp()}  {what}  {message}")

        return on_change, on_retry


def stamp(moment: float | None = None) -> str:
    """Wall-clock time to the millisecond: 18:02:11.204."""
    now = datetime.fromtimestamp(time.time() if moment is None else moment)
    return now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}"


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


_FIELD = re.compile(r"(?:(?P<label>\w+)=)?(?P<when>when\()?(?P<key>[\w.]+)(?(when)\))")


def pick(doc: dict[str, Any], spec: str) -> list[tuple[str, Any]]:
    """(label, value) pairs of `doc` by a spec of fields apart by spaces, each `label=key` or just
    `key` (then the label is the key): `_` in a label reads as a space, a dotted key reaches into
    an object (`agent.version`), and `when(key)` shows a time shorter (`when`).
    `pick(dep, "deployment=id status created=when(created_at)")`."""
    pairs: list[tuple[str, Any]] = []
    for word in spec.split():
        field = _FIELD.fullmatch(word)
        if field is None:
            raise ValueError(f"not a field: {word!r}")
        value: Any = doc
        for part in field["key"].split("."):
            value = value.get(part) if isinstance(value, dict) else None
        label = (field["label"] or field["key"]).replace("_", " ")
        pairs.append((label, when(value) if field["when"] else value))
    return pairs


def image_with_digest(deployment: dict[str, Any]) -> str:
    image = str(deployment.get("image") or "?")
    digest = deployment.get("digest")
    if digest and "@" not in image:
        return f"{image}@{digest}"
    return image
