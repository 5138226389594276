"""The sandbox's durable write log (libs/devstack/sandbox/journal.py): it never shows a write the
objects file does not hold, and survives a line a kill cut short."""

from __future__ import annotations

import json
from pathlib import Path

from libs.devstack.sandbox import SandboxWrite, journal


def write(seq: int) -> SandboxWrite:
    return SandboxWrite(
        seq=seq,
        at="2026-01-01T00:00:00.000+00:00",
        method="PATCH",
        path="/apis/apps/v1/namespaces/ns/deployments/web",
        group="apps",
        resource="deployments",
        namespace="ns",
        name="web",
        subresource=None,
        deployment_id=f"dep_{seq}",
        status=200,
    )


def test_a_logged_write_whose_objects_were_not_saved_is_dropped_with_a_torn_line(tmp_path: Path) -> None:
    state = tmp_path / "objects.json"
    log = journal.writes_path(state)
    assert log.name == "objects.writes.jsonl"
    for seq in (1, 2, 3):
        journal.append_write(log, write(seq))
    journal.save_objects(state, [{"kind": "Deployment"}], last_write_seq=2)  # killed before 3 was saved
    with log.open("a") as f:
        f.write('{"seq": 4, "meth')  # and a line cut short by the kill

    objects, last = journal.load_objects(state)
    assert (objects, last) == ([{"kind": "Deployment"}], 2)
    assert [e["seq"] for e in journal.load_writes(log, last)] == [1, 2]


def test_an_objects_file_from_before_the_log_keeps_every_line(tmp_path: Path) -> None:
    state = tmp_path / "objects.json"
    state.write_text(json.dumps({"objects": []}))
    log = journal.writes_path(state)
    journal.rewrite_writes(log, [write(1), write(2)])
    _, last = journal.load_objects(state)
    assert last is None
    assert [e["deployment_id"] for e in journal.load_writes(log, last)] == ["dep_1", "dep_2"]
    assert journal.load_objects(tmp_path / "missing.json") == ([], 0)
