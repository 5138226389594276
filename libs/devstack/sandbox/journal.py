"""The sandbox's durable mode: objects and the write log kept on disk, so a SIGKILL loses no answer.

A real API server answers a write only once etcd has it. With `--state`, the sandbox does the
same: after every write request it accepted, the objects are saved (atomically) *before* the
answer is sent, so whatever a client saw acknowledged survives a kill. The write log (what
`GET /_sandbox/writes` serves, the chaos run's evidence of what was applied) is appended to a
JSON-lines file next to the objects.

Subtle: the log line is written first and the objects second, and the objects file names the
last log entry it contains (`last_write_seq`). A kill between the two leaves a log line for a
write whose effect was lost and whose client got no answer; on load such lines (seq above
`last_write_seq`) are dropped, so the log never shows a write the cluster does not hold.

The objects are not rewritten whole per write (that made each write cost the size of the cluster:
the chaos run's sandbox spent most of its CPU there): a write appends what it changed, one line of
store events naming the last write it contains, to the changes file beside the snapshot
(`changes_path`), and every `COMPACT_EVERY` lines the snapshot is rewritten and the changes file
emptied. Loading takes the snapshot, then replays the changes newer than its resourceVersion (a
kill between the snapshot's rename and the truncation replays nothing twice), skipping a torn line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, Final

from libs.devstack.sandbox.values import JsonDict


def writes_path(state: Path) -> Path:
    """Where the write log of the objects file `state` lives."""
    return state.with_name(state.stem + ".writes.jsonl")


COMPACT_EVERY: Final = 2_000  # change lines before the snapshot is rewritten


def changes_path(state: Path) -> Path:
    """Where the changes since the snapshot `state` was written are appended."""
    return state.with_name(state.stem + ".changes.jsonl")


def save_objects(path: Path, objects: list[JsonDict], last_write_seq: int, *, rv: int = 0) -> None:
    """Write the objects to `path` atomically (a crash mid-write keeps the previous file); `rv`: the
    store's resourceVersion they are as of (changes at or below it are in them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    document = {"objects": objects, "last_write_seq": last_write_seq, "rv": rv}
    partial.write_text(json.dumps(document), encoding="utf-8")
    partial.replace(path)


def change(kind_of: JsonDict, type_: str, obj: JsonDict) -> JsonDict:
    """One store event as a change line's entry: `kind_of` holds group, version and plural."""
    return {**kind_of, "type": type_, "object": obj}


def append_changes(out: IO[str], changes: Iterable[JsonDict], last_write_seq: int) -> None:
    """One line: these changes, and the last write whose effect they complete; flushed to the OS."""
    out.write(json.dumps({"last_write_seq": last_write_seq, "changes": list(changes)}) + "\n")
    out.flush()


def _identity(entry: JsonDict) -> tuple[Any, ...]:
    obj = entry.get("object")
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return ("unnamed", id(entry))  # kept as it is; the store's restore skips what it cannot read
    kind = (entry.get("group"), entry.get("version"), entry.get("plural"))
    return (*kind, meta.get("namespace"), meta.get("name"))


def _rv_of(obj: JsonDict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (KeyError, AttributeError, TypeError, ValueError):
        return 0


def load_objects(path: Path) -> tuple[list[JsonDict], int | None]:
    """The saved objects with the changes since replayed, and the last write they contain (None: a
    file from before the log)."""
    if not path.exists():
        snapshot: dict[str, Any] = {"objects": [], "last_write_seq": 0}
    else:
        snapshot = json.loads(path.read_text(encoding="utf-8"))
    last = snapshot.get("last_write_seq")
    last_seq = last if isinstance(last, int) else None
    saved_rv = snapshot.get("rv")
    floor = saved_rv if isinstance(saved_rv, int) else 0
    objects = {_identity(entry): entry for entry in snapshot.get("objects") or []}
    changes = changes_path(path)
    if changes.exists():
        for line in changes.read_text(encoding="utf-8").splitlines():
            try:
                batch = json.loads(line)
            except ValueError:
                continue  # the line a kill cut short
            for entry in batch.get("changes") or []:
                if not isinstance(entry, dict) or _rv_of(entry.get("object") or {}) <= floor:
                    continue  # already in the snapshot (killed between its rename and the truncation)
                if entry.get("type") == "DELETED":
                    objects.pop(_identity(entry), None)
                else:
                    objects[_identity(entry)] = {
                        k: entry[k] for k in ("group", "version", "plural", "object")
                    }
            seq = batch.get("last_write_seq")
            if isinstance(seq, int):
                last_seq = max(last_seq or 0, seq)
    return list(objects.values()), last_seq


def append_write(path: Path, write: Any) -> None:
    """One log line; flushed to the OS, which keeps it across a kill of this process."""
    with path.open("a", encoding="utf-8") as log:
        log.write(json.dumps(dataclasses.asdict(write)) + "\n")


def load_writes(path: Path, last_write_seq: int | None) -> list[JsonDict]:
    """The log's entries, without those the objects never received (and a torn last line)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the line a kill cut short
        if isinstance(entry, dict) and (last_write_seq is None or entry.get("seq", 0) <= last_write_seq):
            entries.append(entry)
    return entries


def rewrite_writes(path: Path, writes: list[Any]) -> None:
    """The log file holding exactly `writes` (after a load dropped some, or a clear)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text("".join(json.dumps(dataclasses.asdict(w)) + "\n" for w in writes), encoding="utf-8")
    partial.replace(path)


class Changes:
    """The durable sandbox's open changes file: store events are buffered as they happen and written
    as one line per `flush` (a write request, before it is answered; the controllers' own changes
    at the next flush); `due` says when the snapshot should be rewritten."""

    def __init__(self, state: Path) -> None:
        self.path = changes_path(state)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as existing:
            existing.seek(0)
            self._lines = sum(1 for _ in existing)
        self._out: IO[str] = self.path.open("a", encoding="utf-8")
        self._pending: list[JsonDict] = []

    def add(self, kind_of: JsonDict, type_: str, obj: JsonDict) -> None:
        self._pending.append(change(kind_of, type_, obj))

    def flush(self, last_write_seq: int) -> None:
        if not self._pending:
            return
        append_changes(self._out, self._pending, last_write_seq)
        self._pending.clear()
        self._lines += 1

    @property
    def due(self) -> bool:
        return self._lines >= COMPACT_EVERY

    def truncate(self) -> None:
        """After a snapshot that holds every change: start the file again (pending ones stay)."""
        self._out.close()
        self._out = self.path.open("w", encoding="utf-8")
        self._lines = 0

    def close(self) -> None:
        self._out.close()
