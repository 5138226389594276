"""The durable sandbox's changes file (libs/devstack/sandbox/journal.py): a snapshot plus the changes
since, replayed in order; changes the snapshot already holds are not applied twice, a torn line is
skipped, and the last write a line completes is what the write log is cut to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libs.devstack.sandbox import journal

CONFIG_MAPS = {"group": "", "version": "v1", "plural": "configmaps"}


def config_map(name: str, rv: int, value: str = "") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "resourceVersion": str(rv)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"v": value}}


def entry(obj: dict[str, Any]) -> dict[str, Any]:
    return {**CONFIG_MAPS, "object": obj}


def names_and_values(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {o["object"]["metadata"]["name"]: o["object"]["data"]["v"] for o in objects}


def test_changes_replay_over_the_snapshot_in_order(tmp_path: Path) -> None:
    state = tmp_path / "objects.json"
    journal.save_objects(state, [entry(config_map("a", 5, "old")), entry(config_map("b", 6))], 3, rv=6)
    changes = journal.Changes(state)
    changes.add(CONFIG_MAPS, "MODIFIED", config_map("a", 7, "new"))
    changes.add(CONFIG_MAPS, "ADDED", config_map("c", 8, "c1"))
    changes.flush(last_write_seq=4)
    changes.add(CONFIG_MAPS, "DELETED", config_map("b", 9))
    changes.flush(last_write_seq=5)
    changes.add(CONFIG_MAPS, "MODIFIED", config_map("c", 10, "never flushed"))  # a kill before the flush
    changes.close()

    objects, last = journal.load_objects(state)
    assert names_and_values(objects) == {"a": "new", "c": "c1"}
    assert last == 5


def test_a_torn_line_is_skipped_and_what_the_snapshot_holds_is_not_replayed(tmp_path: Path) -> None:
    state = tmp_path / "objects.json"
    changes = journal.Changes(state)
    changes.add(CONFIG_MAPS, "ADDED", config_map("a", 1, "first"))
    changes.flush(last_write_seq=1)
    changes.add(CONFIG_MAPS, "DELETED", config_map("a", 2))
    changes.flush(last_write_seq=2)
    # The snapshot was rewritten (a recreated "a" at rv 3) but a kill came before the truncation:
    journal.save_objects(state, [entry(config_map("a", 3, "again"))], 3, rv=3)
    with journal.changes_path(state).open("a") as out:
        out.write('{"last_write_seq": 4, "chan')  # and a line the kill cut short
    changes.close()

    objects, last = journal.load_objects(state)
    assert names_and_values(objects) == {"a": "again"}  # the old delete (rv 2) is not applied to it
    assert last == 3


def test_the_snapshot_is_due_after_enough_lines_and_truncation_starts_over(tmp_path: Path) -> None:
    state = tmp_path / "objects.json"
    changes = journal.Changes(state)
    for rv in range(1, journal.COMPACT_EVERY + 1):
        assert not changes.due
        changes.add(CONFIG_MAPS, "MODIFIED", config_map("a", rv, str(rv)))
        changes.flush(last_write_seq=rv)
    assert changes.due
    journal.save_objects(
        state, [entry(config_map("a", journal.COMPACT_EVERY, "kept"))], 1, rv=journal.COMPACT_EVERY
    )
    changes.truncate()
    assert not changes.due
    assert journal.changes_path(state).read_text() == ""
    changes.close()
    assert names_and_values(journal.load_objects(state)[0]) == {"a": "kept"}
