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
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from libs.devstack.sandbox.values import JsonDict


def writes_path(state: Path) -> Path:
    """Where the write log of the objects file `state` lives."""
    return state.with_name(state.stem + ".writes.jsonl")


def save_objects(path: Path, objects: list[JsonDict], last_write_seq: int) -> None:
    """Write the objects to `path` atomically (a crash mid-write keeps the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps({"objects": objects, "last_write_seq": last_write_seq}), encoding="utf-8")
    partial.replace(path)


def load_objects(path: Path) -> tuple[list[JsonDict], int | None]:
    """The saved objects and the last write they contain (None: a file from before the log)."""
    if not path.exists():
        return [], 0
    document = json.loads(path.read_text(encoding="utf-8"))
    last = document.get("last_write_seq")
    return list(document.get("objects") or []), last if isinstance(last, int) else None


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
