"""Which objects name which owner (ownerReferences), for the sandbox's garbage collection.

An index by owner uid instead of a scan of every stored object per delete: the sandbox replaces a
Deployment's Pods on every rollout, and each delete scanned the whole cluster. An entry can
outlive a changed reference (an update that drops it does not tell the index): the store checks
the dependent's current references before collecting it (`owner_uids`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from libs.devstack.sandbox.kinds import Kind
from libs.devstack.sandbox.values import json_array

Dependent = tuple[Kind, str | None, str]  # kind, namespace, name


def owner_uids(meta: Mapping[str, Any]) -> list[str]:
    """The uids an object's metadata names as its owners."""
    owners = json_array(meta.get("ownerReferences"))
    return [str(o["uid"]) for o in owners if isinstance(o, dict) and o.get("uid")]


class Dependents:
    def __init__(self) -> None:
        self._by_owner: dict[str, set[Dependent]] = {}

    def saved(self, dependent: Dependent, meta: Mapping[str, Any]) -> None:
        for uid in owner_uids(meta):
            self._by_owner.setdefault(uid, set()).add(dependent)

    def deleted(self, dependent: Dependent, meta: Mapping[str, Any]) -> None:
        for uid in owner_uids(meta):
            self._by_owner.get(uid, set()).discard(dependent)

    def of(self, owner_uid: str) -> list[Dependent]:
        """What names `owner_uid` (in a stable order; entries may be stale: check the object)."""
        return sorted(self._by_owner.get(owner_uid, set()), key=_order)

    def take(self, owner_uid: str | None) -> list[Dependent]:
        """What named `owner_uid` (in a stable order), forgetting the owner."""
        found = self._by_owner.pop(owner_uid, set()) if owner_uid else set()
        return sorted(found, key=_order)


def _order(dependent: Dependent) -> tuple[str, str, str, str]:
    kind, namespace, name = dependent
    return (kind.group, kind.plural, namespace or "", name)
