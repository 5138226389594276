"""Label and field selectors, and what one list or watch sees of a change.

kmock ignores `labelSelector` and `fieldSelector`; here they follow the apiserver's
grammar (`a in (x,y)`, `!a`, `a!=b`, `metadata.name=x`). Subtle: a watcher whose
selector an object moves into sees ADDED, and one it moves out of sees DELETED, as on a
real cluster, not MODIFIED.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from libs.devstack.sandbox.errors import bad_request
from libs.devstack.sandbox.kinds import Kind
from libs.devstack.sandbox.values import JsonDict, json_object

if TYPE_CHECKING:  # the store imports this module
    from libs.devstack.sandbox.store import Event

_SET_TERM = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)$")
_EQ_TERM = re.compile(r"^(?P<key>[^\s!=<>(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=<>(),]*)$")
_EXISTS_TERM = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=<>(),]+)$")


@dataclasses.dataclass(frozen=True)
class _LabelRequirement:
    key: str
    op: str  # in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case _:
                return not present


def _split_terms(text: str) -> list[str]:
    """Split a selector on the commas that are not inside `in (...)` parentheses."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return [term for term in terms if term]


def parse_label_selector(text: str) -> list[_LabelRequirement]:
    requirements: list[_LabelRequirement] = []
    for term in _split_terms(text):
        if match := _SET_TERM.match(term):
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append(_LabelRequirement(match["key"], match["op"], values))
        elif match := _EQ_TERM.match(term):
            op = "notin" if match["op"] == "!=" else "in"
            requirements.append(_LabelRequirement(match["key"], op, frozenset({match["value"]})))
        elif match := _EXISTS_TERM.match(term):
            requirements.append(_LabelRequirement(match["key"], "!exists" if match["neg"] else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: {term!r}")
    return requirements


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_field_selector(text: str) -> list[tuple[str, bool, str]]:
    """`a.b=x,c!=y` -> [(path, wanted_equal, value)]."""
    requirements: list[tuple[str, bool, str]] = []
    for term in _split_terms(text):
        match = re.match(r"^(?P<path>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>.*)$", term)
        if match is None:
            raise bad_request(f"invalid field selector: {term!r}")
        requirements.append((match["path"], match["op"] != "!=", match["value"].strip()))
    return requirements


@dataclasses.dataclass(frozen=True)
class Filter:
    """What one list or watch asks for: a namespace (or all) and label/field selectors."""

    kind: Kind
    namespace: str | None
    labels: tuple[_LabelRequirement, ...] = ()
    fields: tuple[tuple[str, bool, str], ...] = ()

    @classmethod
    def from_query(cls, kind: Kind, namespace: str | None, query: Mapping[str, str]) -> Filter:
        labels = parse_label_selector(query.get("labelSelector", ""))
        fields = _parse_field_selector(query.get("fieldSelector", ""))
        return cls(kind, namespace, tuple(labels), tuple(fields))

    def exact_name(self) -> str | None:
        """The name a `metadata.name=X` field selector asks for, if it has one."""
        return next((value for path, equal, value in self.fields if path == "metadata.name" and equal), None)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = json_object(obj.get("metadata"))
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = json_object(meta.get("labels"))
        if not all(requirement.matches(labels) for requirement in self.labels):
            return False
        return all((_field_value(obj, path) == value) == equal for path, equal, value in self.fields)

    def event_for(self, event: Event) -> JsonDict | None:
        """The watch event this watcher sees, translating moves across its selector as the apiserver does."""
        if event.kind != self.kind:
            return None
        now_in = self.matches(event.obj)
        if event.type == "MODIFIED" and event.old is not None:
            was_in = self.matches(event.old)
            if now_in and not was_in:
                return {"type": "ADDED", "object": event.obj}
            if was_in and not now_in:
                return {"type": "DELETED", "object": event.obj}
        return {"type": event.type, "object": event.obj} if now_in else None
