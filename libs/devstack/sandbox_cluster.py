"""The sandbox data plane: a Kubernetes API server for machines without a cluster.

Why
---
`make up`, the e2e suite (which runs this module as its own OS process) and the
in-process integration tests need *a* Kubernetes API for the data-plane agent
to deploy into, but this machine has no Docker, kind or k3s. `kmock`'s
`KubernetesEmulator` keeps objects in memory and speaks the REST dialect, but it
is a test double, not an API server, and it differs from one exactly where the
agent's logic lives. `SandboxCluster` puts an aiohttp front in front of one
emulator (its `RawHandler.__call__` is awaited in-process, no second socket):

* the front serves every *object* URL itself (get/list/watch/create/patch/
  put/delete, any resource in kmock's bundled discovery data) and keeps the
  objects in the emulator's own `objects` storage;
* everything else -- `/version`, `/api`, `/apis/...` discovery, unknown URLs --
  goes to the emulator, with its 404s rewritten into real `NotFound` Statuses;
* a simulated deployment controller + kubelet moves Deployments and Jobs to
  their final status, or fails them by image substring (see `add_failure_rule`);
* a log of every write (`writes`, `GET /_sandbox/writes`) lets tests prove that
  no deployment was applied twice.

What is subtle
--------------
* Emulator quirks that made the front take over object URLs: its path parser
  crashes (500) on `/api/v1/namespaces` and treats `/api/v1/namespaces/NAME`
  as a namespace prefix; it has no PUT; it sets no uid/resourceVersion/
  generation/creationTimestamp; a duplicate create raises inside the handler,
  which becomes 409 only while the emulator is entered (`async with`) and a
  bare 500 otherwise; listing a resource it has never stored answers 404
  instead of an empty list; it ignores `labelSelector`, `fieldSelector`,
  `resourceVersion` and `timeoutSeconds` (a watch with `timeout_seconds` never
  ends, and a resumed watch replays everything as ADDED); its 404/409 reasons
  are not the apiserver's (`Object Not Found` vs `NotFound`); it answers 200,
  not 201, to a create; and it keeps every request and error it served in
  memory (harmless for discovery traffic only, which is all it now sees).
* Every write is synchronous between reading the stored object and publishing
  the event (no `await`), so writes are atomic on the event loop without a lock,
  and a watch registers its queue in the same step that takes its snapshot or
  replays the event log: no event can fall between the two.
* `metadata.resourceVersion` is one global counter; every stored change bumps
  it, a no-op patch does not (and sends no event), just like the apiserver.
  A watch with `resourceVersion=N` replays events after N from a bounded log
  and answers an ERROR 410 `Expired` event when N fell out of it.
* `metadata.generation` starts at 1 and grows when anything besides metadata
  and status changes; `/status` writes change only `.status`, and the main
  endpoint ignores `.status` for resources that have a status subresource.
* Patch flavours: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
  strategic merge patch (kubernetes_asyncio's default for dict bodies -- lists
  with a patch merge key such as containers/env/volumes merge *by key*, as in a
  real cluster, so an env var removed from a desired manifest survives a
  strategic patch there and here), and server-side apply approximated for a
  single field manager (fields it applied before and omits now are removed,
  lists are replaced, a missing object is created).
* The controller writes through the same store functions the HTTP handlers
  use, so watchers see its MODIFIED events; it reacts to the store's events
  (not polling) and resyncs twice a second for progress deadlines and healed
  failure rules. Its task is named `kmock-sandbox-controller` so the test
  suite's task-leak check treats it like kmock's own tasks.
* Namespaces must exist before namespaced objects are created in them (as on a
  real cluster; `require_namespaces=False` relaxes it); `default`,
  `kube-system`, `kube-public` and `kube-node-lease` exist from the start.
  Deleting a namespace deletes its content at once. Deletion cascades to
  objects whose ownerReferences name the deleted uid unless the propagation
  policy is Orphan; objects with finalizers only get a deletionTimestamp.
* A few apiserver defaults are applied (Deployment replicas 1, progress
  deadline 600 s, strategy; Job backoffLimit/completions/parallelism; CronJob
  policies; Service type/protocol/targetPort), so a "desired vs live" diff in
  the agent meets the same extra fields it would meet on a real cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import re
import secrets
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import kmock
from aiohttp import web

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

DEPLOYMENT_ID_ANNOTATION: Final = "landfall.dev/deployment-id"

_WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_EVENT_LOG_SIZE: Final = 20_000
_HISTORY_LIMIT: Final = 4  # versions kept per object in the emulator's storage
_RESYNC_SECONDS: Final = 0.5
_MAX_SIMULATED_PODS: Final = 10
_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # what the apiserver uses for generateName
_INITIAL_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")
_SYSTEM_METADATA: Final = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_DNS_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(length))


def _short_hash(value: Any, length: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).digest()
    return "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:length])


def _dict(value: Any) -> JsonDict:
    """The value if it is a JSON object, else an empty dict (for tolerant reading)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --- API errors as apiserver `Status` objects ------------------------------------------------------


def _status_body(code: int, reason: str, message: str, details: JsonDict | None = None) -> JsonDict:
    body: JsonDict = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class _ApiError(Exception):
    """An error the apiserver would answer with a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: JsonDict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> JsonDict:
        return _status_body(self.code, self.reason, self.message, self.details)

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.code)


def _bad_request(message: str) -> _ApiError:
    return _ApiError(400, "BadRequest", message)


def _method_not_allowed() -> _ApiError:
    return _ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def _gone_resource() -> _ApiError:
    return _ApiError(404, "NotFound", "the server could not find the requested resource")


# --- resource kinds ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str]
    ref: kmock.resource = dataclasses.field(compare=False, hash=False, repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def is_(self, group: str, plural: str) -> bool:
        return self.group == group and self.plural == plural

    def details(self, name: str) -> JsonDict:
        return {"name": name, "group": self.group, "kind": self.plural}

    def not_found(self, name: str) -> _ApiError:
        return _ApiError(404, "NotFound", f'{self.qualified} "{name}" not found', self.details(name))

    def already_exists(self, name: str) -> _ApiError:
        return _ApiError(
            409, "AlreadyExists", f'{self.qualified} "{name}" already exists', self.details(name)
        )

    def conflict(self, name: str, why: str) -> _ApiError:
        message = f'Operation cannot be fulfilled on {self.qualified} "{name}": {why}'
        return _ApiError(409, "Conflict", message, self.details(name))

    def invalid(self, name: str, why: str) -> _ApiError:
        message = f'{self.kind} "{name}" is invalid: {why}'
        return _ApiError(422, "Invalid", message, self.details(name))


# --- selectors -----------------------------------------------------------------------------------

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


def _parse_label_selector(text: str) -> list[_LabelRequirement]:
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
            raise _bad_request(f"unable to parse requirement: {term!r}")
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
            raise _bad_request(f"invalid field selector: {term!r}")
        requirements.append((match["path"], match["op"] != "!=", match["value"].strip()))
    return requirements


@dataclasses.dataclass(frozen=True)
class _Filter:
    """What one list or watch asks for: a namespace (or all) and label/field selectors."""

    kind: _Kind
    namespace: str | None
    labels: tuple[_LabelRequirement, ...] = ()
    fields: tuple[tuple[str, bool, str], ...] = ()

    @classmethod
    def from_query(cls, kind: _Kind, namespace: str | None, query: Mapping[str, str]) -> _Filter:
        labels = _parse_label_selector(query.get("labelSelector", ""))
        fields = _parse_field_selector(query.get("fieldSelector", ""))
        return cls(kind, namespace, tuple(labels), tuple(fields))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = _dict(obj.get("metadata"))
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = _dict(meta.get("labels"))
        if not all(requirement.matches(labels) for requirement in self.labels):
            return False
        return all((_field_value(obj, path) == value) == equal for path, equal, value in self.fields)

    def event_for(self, event: _Event) -> JsonDict | None:
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


# --- patch flavours ------------------------------------------------------------------------------


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JsonDict = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


# Patch merge keys of the built-in types, by field name (unambiguous for the types the agent writes).
_SMP_MERGE_KEYS: Final[Mapping[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "conditions": "type",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
_SMP_SET_LISTS: Final = frozenset({"finalizers"})


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value


def _smp_merge_key(field: str, items: Sequence[Any]) -> str | None:
    if field == "ports":
        has_container_port = any(isinstance(item, dict) and "containerPort" in item for item in items)
        return "containerPort" if has_container_port else "port"
    return _SMP_MERGE_KEYS.get(field)


def _smp_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    if field in _SMP_SET_LISTS:
        return copy.deepcopy(current) + [item for item in patch if item not in current]
    key = _smp_merge_key(field, [*current, *patch])
    replace = any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch)
    if key is None or replace:
        return [
            _strip_directives(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)
        ]
    result = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(_strip_directives(item))
            continue
        index = next(
            (i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is not None:
            result[index] = _strategic_merge(result[index], item)
        else:
            result.append(_strip_directives(item))
    return result


def _strategic_merge(target: Any, patch: JsonDict) -> JsonDict:
    """Strategic merge patch for the built-in types (see `_SMP_MERGE_KEYS`)."""
    if patch.get("$patch") == "replace":
        replaced: JsonDict = _strip_directives(patch)
        return replaced
    result: JsonDict = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [item for item in result[field] if item not in value]
        elif key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys: ordering/pruning hints, not data
        elif value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = _strategic_merge(result.get(key), value)
        elif isinstance(value, list):
            result[key] = _smp_list(key, _list(result.get(key)), value)
        else:
            result[key] = value
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise _ApiError(422, "Invalid", f"invalid JSON pointer: {path!r}")
    if path == "":
        return []
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _pointer_get(doc: Any, tokens: Sequence[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            raise _ApiError(422, "Invalid", f"JSON patch path not found: /{'/'.join(tokens)}")
    return doc


def _pointer_add(doc: Any, tokens: Sequence[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _pointer_get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (last == "-" or (last.isdigit() and int(last) <= len(parent))):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        raise _ApiError(422, "Invalid", f"cannot add at JSON patch path /{'/'.join(tokens)}")
    return doc


def _pointer_remove(doc: Any, tokens: Sequence[str]) -> Any:
    if not tokens:
        raise _ApiError(422, "Invalid", "cannot remove the whole document")
    parent = _pointer_get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _ApiError(422, "Invalid", f"JSON patch path not found: /{'/'.join(tokens)}")


def _json_patch(doc: Any, operations: list[Any]) -> Any:
    """RFC 6902 JSON patch."""
    for operation in operations:
        if not isinstance(operation, dict):
            raise _ApiError(422, "Invalid", f"invalid JSON patch operation: {operation!r}")
        op = operation.get("op")
        tokens = _pointer(operation.get("path"))
        if op == "add":
            doc = _pointer_add(doc, tokens, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            _pointer_remove(doc, tokens)
        elif op == "replace":
            _pointer_remove(doc, tokens) if tokens else None
            doc = _pointer_add(doc, tokens, copy.deepcopy(operation.get("value")))
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"))
            value = _pointer_remove(doc, source) if op == "move" else copy.deepcopy(_pointer_get(doc, source))
            doc = _pointer_add(doc, tokens, value)
        elif op == "test":
            if _pointer_get(doc, tokens) != operation.get("value"):
                raise _ApiError(422, "Invalid", f"JSON patch test failed at {operation.get('path')}")
        else:
            raise _ApiError(422, "Invalid", f"unknown JSON patch operation: {op!r}")
    return doc


def _removals(previous: Any, applied: Any) -> JsonDict:
    """A merge patch that deletes what a field manager applied before and no longer applies."""
    patch: JsonDict = {}
    if not isinstance(previous, dict) or not isinstance(applied, dict):
        return patch
    for key, old in previous.items():
        if key not in applied:
            patch[key] = None
        elif isinstance(old, dict) and isinstance(applied[key], dict):
            nested = _removals(old, applied[key])
            if nested:
                patch[key] = nested
    return patch


def _without_system_metadata(obj: JsonDict) -> JsonDict:
    result = copy.deepcopy(obj)
    meta = result.get("metadata")
    if isinstance(meta, dict):
        for field in (*_SYSTEM_METADATA, "managedFields"):
            meta.pop(field, None)
    return result


# --- defaults the apiserver applies ------------------------------------------------------------------


def _apply_defaults(kind: _Kind, obj: JsonDict) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if kind.is_("apps", "deployments"):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault(
            "strategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        )
    elif kind.is_("batch", "jobs"):
        if "completions" not in spec and "parallelism" not in spec:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
    elif kind.is_("batch", "cronjobs"):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
    elif kind.is_("", "services"):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in _list(spec.get("ports")):
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])


def _initial_status(kind: _Kind) -> JsonDict:
    if kind.is_("", "pods"):
        return {"phase": "Pending"}
    if kind.is_("", "namespaces"):
        return {"phase": "Active"}
    return {}


def _validate_name(kind: _Kind, name: str) -> None:
    label_only = kind.is_("", "namespaces") or kind.is_("", "services")
    limit = 52 if kind.is_("batch", "cronjobs") else 63 if label_only or kind.is_("batch", "jobs") else 253
    pattern = _DNS_LABEL if label_only else _DNS_SUBDOMAIN
    if len(name) > limit or not pattern.match(name):
        why = (
            f"metadata.name: Invalid value: {name!r}: must be no more than {limit} characters,"
            " consist of lower case alphanumeric characters, '-' or '.',"
            " and start and end with an alphanumeric character"
        )
        raise kind.invalid(name, why)


# --- the store: objects in the emulator, resource versions, events --------------------------------


@dataclasses.dataclass(frozen=True)
class _Event:
    rv: int
    kind: _Kind
    type: str  # ADDED, MODIFIED, DELETED
    obj: JsonDict  # never mutated after publishing
    old: JsonDict | None = None


_ObjectKey = tuple[kmock.resource, str | None, str]
_Mutation = Callable[[JsonDict], Any]


class _Store:
    """The apiserver's storage semantics over the emulator's `objects`.

    All methods are synchronous: a write reads, changes and publishes without
    yielding to the event loop, which makes it atomic for every other coroutine.
    Stored versions and published events are never mutated; readers get copies.
    """

    def __init__(self, emulator: kmock.KubernetesEmulator, *, require_namespaces: bool) -> None:
        self.emulator = emulator
        self.require_namespaces = require_namespaces
        self._rv = 0
        self._kinds: dict[tuple[str, str, str], _Kind | None] = {}
        self._log: deque[_Event] = deque(maxlen=_EVENT_LOG_SIZE)
        self._log_floor = 0  # events with rv <= this are gone from the log
        self._watchers: set[asyncio.Queue[_Event | None]] = set()
        self._closed = False  # set while stopping: new watches end at once
        self._listeners: list[Callable[[_Event], None]] = []
        self._applied: dict[tuple[str, str, str | None, str, str | None, str], JsonDict] = {}
        # Live object names by kind and namespace: lists read these instead of scanning every object
        # kmock stores (with a thousand data planes' objects, scans were most of the sandbox's CPU).
        self._names: dict[tuple[_Kind, str | None], set[str]] = {}
        namespaces = self.kind("", "v1", "namespaces")
        assert namespaces is not None, "kmock's bundled resources lack v1/namespaces"
        self.namespaces = namespaces

    # Kinds.

    def kind(self, group: str, version: str, plural: str) -> _Kind | None:
        cache_key = (group, version, plural)
        if cache_key not in self._kinds:
            ref = kmock.resource(group, version, plural)
            found: _Kind | None = None
            if ref in self.emulator.resources:
                info = self.emulator.resources[ref]
                found = _Kind(
                    group=group,
                    version=version,
                    plural=plural,
                    kind=info.kind or plural.capitalize(),
                    namespaced=bool(info.namespaced),
                    subresources=frozenset(info.subresources),
                    ref=ref,
                )
            self._kinds[cache_key] = found
        return self._kinds[cache_key]

    def kind_for(self, api_version: str, plural: str) -> _Kind:
        group, _, version = api_version.rpartition("/")
        kind = self.kind(group, version, plural)
        if kind is None:
            raise LookupError(f"unknown resource {plural} in {api_version}")
        return kind

    # Reading.

    @property
    def resource_version(self) -> int:
        return self._rv

    def _key(self, kind: _Kind, namespace: str | None, name: str) -> _ObjectKey:
        return (kind.ref, namespace if kind.namespaced else None, name)

    def _load(self, kind: _Kind, namespace: str | None, name: str) -> JsonDict | None:
        key = self._key(kind, namespace, name)
        if key not in self.emulator.objects:
            return None
        stored = self.emulator.objects[key]
        return None if stored.deleted else stored.raw

    def get(self, kind: _Kind, namespace: str | None, name: str) -> JsonDict | None:
        found = self._load(kind, namespace, name)
        return copy.deepcopy(found) if found is not None else None

    def live(self) -> list[tuple[_Kind, JsonDict]]:
        result: list[tuple[_Kind, JsonDict]] = []
        for (ref, _, _), stored in list(self.emulator.objects.items()):
            kind = self.kind(ref.group or "", ref.version or "", ref.plural or "")
            if kind is not None and not stored.deleted:
                result.append((kind, stored.raw))
        return result

    def select(self, flt: _Filter) -> list[JsonDict]:
        namespaces = (
            [flt.namespace if flt.kind.namespaced else None]
            if flt.namespace is not None or not flt.kind.namespaced
            else [ns for kind, ns in self._names if kind == flt.kind]
        )
        found = []
        for namespace in namespaces:
            for name in list(self._names.get((flt.kind, namespace), ())):
                obj = self._load(flt.kind, namespace, name)
                if obj is not None and flt.matches(obj):
                    found.append(obj)
        found.sort(key=lambda obj: (_dict(obj["metadata"]).get("namespace") or "", obj["metadata"]["name"]))
        return copy.deepcopy(found)

    # Watching.

    def watch(
        self, flt: _Filter, since: str | None, initial: bool
    ) -> tuple[list[JsonDict], asyncio.Queue[_Event | None]]:
        """Register a watcher; returns the events to send first and the queue of the later ones."""
        first: list[JsonDict] = []
        if initial or since in (None, "", "0"):
            first = [{"type": "ADDED", "object": obj} for obj in self.select(flt)]
        else:
            try:
                after = int(since or "")
            except ValueError as exc:
                raise _ApiError(400, "BadRequest", f"invalid resourceVersion: {since!r}") from exc
            if after < self._log_floor:
                expired = _status_body(
                    410, "Expired", f"too old resource version: {after} ({self._log_floor})"
                )
                first = [{"type": "ERROR", "object": expired}]
            else:
                for event in self._log:
                    if event.rv > after and (translated := flt.event_for(event)) is not None:
                        first.append(translated)
        queue: asyncio.Queue[_Event | None] = asyncio.Queue()
        self._watchers.add(queue)
        if self._closed:
            queue.put_nowait(None)
        return first, queue

    def unwatch(self, queue: asyncio.Queue[_Event | None]) -> None:
        self._watchers.discard(queue)

    # Persistence (for `make up`: the sandbox's objects survive a restart like the rest of the state).

    def export(self) -> list[JsonDict]:
        """Every live object with its kind, as JSON-ready entries (see `restore`)."""
        return [
            {
                "group": kind.group,
                "version": kind.version,
                "plural": kind.plural,
                "object": copy.deepcopy(obj),
            }
            for kind, obj in self.live()
        ]

    def restore(self, entries: Iterable[JsonDict]) -> int:
        """Put exported objects back as they were (uid, resourceVersion, status); returns how many.
        Watches from before cannot resume across it: their resourceVersion is too old (410), as a
        real API server answers after its watch cache is gone, so clients list again."""
        count = 0
        for entry in entries:
            kind = self.kind(entry["group"], entry["version"], entry["plural"])
            obj = entry["object"]
            if kind is None or not isinstance(obj, dict):
                continue
            self._save(kind, obj)
            self._rv = max(self._rv, int(obj["metadata"].get("resourceVersion") or 0))
            count += 1
        self._log_floor = self._rv
        return count

    def close_watchers(self) -> None:
        """End every open watch (and any opened until `reopen`): the server is stopping."""
        self._closed = True
        for queue in self._watchers:
            queue.put_nowait(None)

    def reopen(self) -> None:
        self._closed = False

    def listen(self, listener: Callable[[_Event], None]) -> None:
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[_Event], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # Writing.

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _save(self, kind: _Kind, obj: JsonDict) -> None:
        meta = obj["metadata"]
        key = self._key(kind, meta.get("namespace"), meta["name"])
        self._names.setdefault((kind, key[1]), set()).add(meta["name"])
        if key in self.emulator.objects:
            stored = self.emulator.objects[key]
            stored.history.append(obj)
            if len(stored.history) > _HISTORY_LIMIT:
                del stored.history[: len(stored.history) - _HISTORY_LIMIT]
        else:
            self.emulator.objects[key] = obj

    def _publish(self, kind: _Kind, type_: str, obj: JsonDict, old: JsonDict | None = None) -> None:
        event = _Event(int(obj["metadata"]["resourceVersion"]), kind, type_, obj, old)
        if self._log.maxlen is not None and len(self._log) == self._log.maxlen:
            self._log_floor = self._log[0].rv
        self._log.append(event)
        for queue in self._watchers:
            queue.put_nowait(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("sandbox event listener failed")

    def _generate_name(self, kind: _Kind, namespace: str | None, prefix: str) -> str:
        prefix = prefix[:58]
        while True:
            name = prefix + _random_suffix()
            if self._load(kind, namespace, name) is None:
                return name

    def create(self, kind: _Kind, namespace: str | None, body: Any, *, dry_run: bool = False) -> JsonDict:
        if not isinstance(body, dict):
            raise _bad_request("the request body must be a JSON object")
        obj: JsonDict = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        if kind.namespaced:
            if not namespace:
                raise _method_not_allowed()
            if meta.get("namespace") not in (None, "", namespace):
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            namespace = None
            meta.pop("namespace", None)
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix or not isinstance(prefix, str):
                raise kind.invalid("", "metadata.name: Required value: name or generateName is required")
            name = meta["name"] = self._generate_name(kind, namespace, prefix)
        if not isinstance(name, str):
            raise kind.invalid(str(name), "metadata.name: must be a string")
        _validate_name(kind, name)
        if (
            kind.namespaced
            and self.require_namespaces
            and self._load(self.namespaces, None, namespace or "") is None
        ):
            raise self.namespaces.not_found(namespace or "")
        if self._load(kind, namespace, name) is not None:
            raise kind.already_exists(name)

        obj["apiVersion"] = kind.api_version
        obj["kind"] = kind.kind
        for field in ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "managedFields", "selfLink"):  # fmt: skip
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if kind.namespaced:
            meta["generation"] = 1
        if kind.has_status:
            obj["status"] = _initial_status(kind)
        if kind == self.namespaces:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            obj["spec"] = {"finalizers": ["kubernetes"]}
        _apply_defaults(kind, obj)
        if dry_run:
            return obj
        meta["resourceVersion"] = self._next_rv()
        self._save(kind, obj)
        self._publish(kind, "ADDED", obj)
        return copy.deepcopy(obj)

    def update(
        self,
        kind: _Kind,
        namespace: str | None,
        name: str,
        subresource: str | None,
        mutate: _Mutation,
        *,
        expected_rv: Any = None,
        dry_run: bool = False,
    ) -> JsonDict:
        """Read-modify-write one object: the core of PATCH and PUT (and of the controller's writes)."""
        current = self._load(kind, namespace, name)
        if current is None:
            raise kind.not_found(name)
        if expected_rv not in (None, "") and str(expected_rv) != current["metadata"]["resourceVersion"]:
            raise kind.conflict(
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        candidate = mutate(copy.deepcopy(current))
        if not isinstance(candidate, dict):
            raise kind.invalid(name, "the patched object is not a JSON object")
        new = self._protect(kind, current, candidate, subresource)
        if subresource is None:
            _apply_defaults(kind, new)
        if new == current:
            return copy.deepcopy(current)  # a no-op: no new resourceVersion, no event
        meta = new["metadata"]
        if subresource is None and "generation" in meta and _spec_of(new) != _spec_of(current):
            meta["generation"] = int(meta["generation"]) + 1
        if dry_run:
            return new
        meta["resourceVersion"] = self._next_rv()
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._save(kind, new)
            return self._finish_delete(kind, new, propagation="Background")
        self._save(kind, new)
        self._publish(kind, "MODIFIED", new, old=current)
        return copy.deepcopy(new)

    @staticmethod
    def _protect(kind: _Kind, current: JsonDict, candidate: JsonDict, subresource: str | None) -> JsonDict:
        """Keep what a write to this endpoint cannot change."""
        if subresource == "status":
            new = copy.deepcopy(current)
            if candidate.get("status") is not None:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
            return new
        meta = candidate.get("metadata")
        if not isinstance(meta, dict):
            meta = candidate["metadata"] = {}
        for field in _SYSTEM_METADATA:
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        candidate["apiVersion"] = current["apiVersion"]
        candidate["kind"] = current["kind"]
        if kind.has_status:
            if "status" in current:
                candidate["status"] = copy.deepcopy(current["status"])
            else:
                candidate.pop("status", None)
        return candidate

    def delete(
        self,
        kind: _Kind,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        preconditions: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> JsonDict:
        """Delete one object; answer what the apiserver would (a Status, or the object if deletion waits)."""
        current = self._load(kind, namespace, name)
        if current is None:
            raise kind.not_found(name)
        meta = current["metadata"]
        for field, what in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != meta.get(field):
                why = (
                    f"Precondition failed: {what} in precondition: {wanted},"
                    f" {what} in object meta: {meta.get(field)}"
                )
                raise kind.conflict(name, why)
        if dry_run:
            return copy.deepcopy(current)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return copy.deepcopy(current)
            pending = copy.deepcopy(current)
            pending["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            pending["metadata"]["resourceVersion"] = self._next_rv()
            self._save(kind, pending)
            self._publish(kind, "MODIFIED", pending, old=current)
            return copy.deepcopy(pending)
        if kind == self.namespaces:
            for other_kind, obj in self.live():
                if other_kind.namespaced and obj["metadata"].get("namespace") == name:
                    with contextlib.suppress(_ApiError):
                        self.delete(other_kind, name, obj["metadata"]["name"], propagation="Orphan")
            terminating = copy.deepcopy(current)
            terminating["metadata"]["deletionTimestamp"] = _now()
            terminating["status"] = {"phase": "Terminating"}
            self._finish_delete(kind, current, propagation="Orphan")
            return terminating
        gone = self._finish_delete(kind, current, propagation=propagation)
        details = {**kind.details(name), "uid": gone["metadata"]["uid"]}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _finish_delete(self, kind: _Kind, current: JsonDict, *, propagation: str) -> JsonDict:
        meta = current["metadata"]
        namespace, name, uid = meta.get("namespace"), meta["name"], meta.get("uid")
        final = copy.deepcopy(current)
        final["metadata"]["resourceVersion"] = self._next_rv()
        key = self._key(kind, namespace, name)
        stored = self.emulator.objects[key]
        stored.delete()
        self._names.get((kind, key[1]), set()).discard(name)
        if len(stored.history) > _HISTORY_LIMIT:
            del stored.history[: len(stored.history) - _HISTORY_LIMIT]
        for applied_key in [k for k in self._applied if k[:4] == (kind.group, kind.plural, namespace, name)]:
            del self._applied[applied_key]
        self._publish(kind, "DELETED", final)
        if propagation != "Orphan" and uid:
            for other_kind, obj in self.live():
                owners = _list(_dict(obj.get("metadata")).get("ownerReferences"))
                if any(isinstance(owner, dict) and owner.get("uid") == uid for owner in owners):
                    if kind.namespaced and obj["metadata"].get("namespace") != namespace:
                        continue
                    with contextlib.suppress(_ApiError):
                        self.delete(other_kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        return copy.deepcopy(final)

    # Server-side apply bookkeeping (one last-applied configuration per field manager).

    def applied(
        self, kind: _Kind, namespace: str | None, name: str, manager: str, sub: str | None
    ) -> JsonDict | None:
        return self._applied.get((kind.group, kind.plural, namespace, name, sub, manager))

    def remember_applied(
        self, kind: _Kind, namespace: str | None, name: str, manager: str, sub: str | None, config: JsonDict
    ) -> None:
        self._applied[(kind.group, kind.plural, namespace, name, sub, manager)] = copy.deepcopy(config)


def _spec_of(obj: Mapping[str, Any]) -> JsonDict:
    """Everything whose change bumps metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


# --- the simulated controllers -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FailureRule:
    """Pods whose container image contains `image_contains` fail with `reason` (e.g. ImagePullBackOff)."""

    image_contains: str
    reason: str
    message: str = ""

    def message_for(self, image: str, container: str, pod: str) -> str:
        if self.message:
            return self.message
        if self.reason == "ImagePullBackOff":
            return f'Back-off pulling image "{image}"'
        if self.reason == "ErrImagePull":
            return f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found'
        if self.reason == "CrashLoopBackOff":
            return f"back-off 10s restarting failed container={container} pod={pod}"
        return self.reason

    def as_dict(self) -> JsonDict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Failing:
    generation: int
    since: float
    deadline_reported: bool = False


def _condition(type_: str, status: str, reason: str, message: str) -> JsonDict:
    now = _now()
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }


def _owner_reference(obj: JsonDict) -> JsonDict:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class _Controller:
    """What the deployment and job controllers plus a kubelet would do, reduced to status updates."""

    def __init__(self, store: _Store, rules: list[FailureRule]) -> None:
        self._store = store
        self._rules = rules
        self._deployments = store.kind_for("apps/v1", "deployments")
        self._jobs = store.kind_for("batch/v1", "jobs")
        self._pods = store.kind_for("v1", "pods")
        self._dirty: set[tuple[_Kind, str, str]] = set()
        self._failing: dict[tuple[str, str], _Failing] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.paused = False

    def start(self) -> None:
        self._wake = asyncio.Event()  # bound to the running loop on first use; a restart may use another loop
        self._store.listen(self._on_event)
        self._mark_all()
        self._task = asyncio.create_task(self._run(), name="kmock-sandbox-controller")

    async def stop(self) -> None:
        self._store.unlisten(self._on_event)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._mark_all()

    def _mark_all(self) -> None:
        for kind, obj in self._store.live():
            if kind in (self._deployments, self._jobs):
                self._dirty.add((kind, obj["metadata"]["namespace"], obj["metadata"]["name"]))
        self._wake.set()

    def _on_event(self, event: _Event) -> None:
        if event.kind not in (self._deployments, self._jobs):
            return
        namespace, name = event.obj["metadata"]["namespace"], event.obj["metadata"]["name"]
        if event.type == "DELETED":
            self._failing.pop((namespace, name), None)
            self._dirty.discard((event.kind, namespace, name))
        else:
            self._dirty.add((event.kind, namespace, name))
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_RESYNC_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            if self.paused:
                continue
            dirty, self._dirty = self._dirty, set()
            for kind, namespace, name in sorted(dirty, key=lambda key: (key[0].plural, key[1], key[2])):
                try:
                    if kind == self._deployments:
                        self._reconcile_deployment(namespace, name)
                    else:
                        self._reconcile_job(namespace, name)
                except Exception:
                    log.exception("sandbox controller failed on %s %s/%s", kind.plural, namespace, name)
            try:
                self._check_failing()
            except Exception:
                log.exception("sandbox controller failed on its resync")

    def _match(self, template: JsonDict) -> tuple[FailureRule, JsonDict] | None:
        spec = _dict(template.get("spec"))
        containers = [
            c
            for c in _list(spec.get("initContainers")) + _list(spec.get("containers"))
            if isinstance(c, dict)
        ]
        for rule in self._rules:
            for container in containers:
                if rule.image_contains in str(container.get("image", "")):
                    return rule, container
        return None

    def _write_status(self, kind: _Kind, namespace: str, name: str, status: JsonDict) -> None:
        def replace_status(obj: JsonDict) -> JsonDict:
            return {**obj, "status": status}

        self._store.update(kind, namespace, name, "status", replace_status)

    def _delete_owned_pods(self, namespace: str, owner_uid: str) -> None:
        for obj in self._store.select(_Filter(self._pods, namespace)):
            owners = _list(obj["metadata"].get("ownerReferences"))
            if any(isinstance(o, dict) and o.get("uid") == owner_uid for o in owners):
                with contextlib.suppress(_ApiError):
                    self._store.delete(self._pods, namespace, obj["metadata"]["name"])

    def _create_failing_pod(
        self, owner: JsonDict, name: str, labels: JsonDict, rule: FailureRule, bad: JsonDict
    ) -> None:
        namespace = owner["metadata"]["namespace"]
        template = _dict(_dict(owner.get("spec")).get("template"))
        pod_spec = copy.deepcopy(_dict(template.get("spec")))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "annotations": copy.deepcopy(_dict(_dict(template.get("metadata")).get("annotations"))),
                "ownerReferences": [_owner_reference(owner)],
            },
            "spec": pod_spec,
        }
        self._store.create(self._pods, namespace, pod)
        crashing = rule.reason == "CrashLoopBackOff"
        containers = [c for c in _list(pod_spec.get("containers")) if isinstance(c, dict)]
        # A failing init container blocks the first container: report the rule there.
        bad_name = bad.get("name") if any(c.get("name") == bad.get("name") for c in containers) else None
        if bad_name is None and containers:
            bad_name = containers[0].get("name")
        statuses: list[JsonDict] = []
        for container in containers:
            container_name = str(container.get("name", ""))
            image = str(container.get("image", ""))
            status: JsonDict = {
                "name": container_name,
                "image": image,
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 3 if crashing else 0,
            }
            if container.get("name") == bad_name:
                status["state"] = {
                    "waiting": {
                        "reason": rule.reason,
                        "message": rule.message_for(image, container_name, name),
                    }
                }
                if crashing:
                    status["lastState"] = {
                        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": _now()}
                    }
            else:
                status.update(ready=True, started=True, state={"running": {"startedAt": _now()}})
            statuses.append(status)
        pod_status = {
            "phase": "Running" if crashing else "Pending",
            "conditions": [
                _condition("PodScheduled", "True", "", ""),
                _condition("Initialized", "True", "", ""),
                _condition(
                    "ContainersReady", "False", "ContainersNotReady", "containers with unready status"
                ),
                _condition("Ready", "False", "ContainersNotReady", "containers with unready status"),
            ],
            "hostIP": "10.0.0.1",
            "podIP": "10.42.0.10",
            "startTime": _now(),
            "containerStatuses": statuses,
        }
        self._write_status(self._pods, namespace, name, pod_status)

    # Deployments.

    def _reconcile_deployment(self, namespace: str, name: str) -> None:
        obj = self._store.get(self._deployments, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        generation = int(obj["metadata"].get("generation") or 1)
        observed = _dict(obj.get("status")).get("observedGeneration")
        template = _dict(_dict(obj.get("spec")).get("template"))
        matched = self._match(template)
        failing = self._failing.get((namespace, name))
        if isinstance(observed, int) and observed >= generation:
            if failing is not None and matched is None:
                self._deployment_succeeded(obj)  # the image became pullable: the kubelet's retry succeeds
            return
        replicas = int(_dict(obj.get("spec")).get("replicas", 1) or 0)
        if matched is not None and replicas > 0:
            self._deployment_failed(obj, replicas, *matched)
        else:
            self._deployment_succeeded(obj)

    def _replica_set_name(self, obj: JsonDict) -> str:
        template = _dict(_dict(obj.get("spec")).get("template"))
        return f"{obj['metadata']['name']}-{_short_hash(template)}"

    def _deployment_succeeded(self, obj: JsonDict) -> None:
        meta = obj["metadata"]
        replicas = int(_dict(obj.get("spec")).get("replicas", 1) or 0)
        self._failing.pop((meta["namespace"], meta["name"]), None)
        self._delete_owned_pods(meta["namespace"], meta["uid"])
        rs_name = self._replica_set_name(obj)
        status = {
            "observedGeneration": int(meta.get("generation") or 1),
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                _condition(
                    "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
                ),
                _condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                ),
            ],
        }
        self._write_status(self._deployments, meta["namespace"], meta["name"], status)

    def _deployment_failed(self, obj: JsonDict, replicas: int, rule: FailureRule, bad: JsonDict) -> None:
        meta = obj["metadata"]
        namespace, generation = meta["namespace"], int(meta.get("generation") or 1)
        self._delete_owned_pods(namespace, meta["uid"])
        rs_name = self._replica_set_name(obj)
        template = _dict(_dict(obj.get("spec")).get("template"))
        labels = {
            **_dict(_dict(template.get("metadata")).get("labels")),
            "pod-template-hash": rs_name.rsplit("-", 1)[1],
        }
        for _ in range(min(replicas, _MAX_SIMULATED_PODS)):
            self._create_failing_pod(obj, f"{rs_name}-{_random_suffix()}", labels, rule, bad)
        status = {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": 0,
            "availableReplicas": 0,
            "unavailableReplicas": replicas,
            "conditions": [
                _condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                ),
                _condition(
                    "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
                ),
            ],
        }
        self._write_status(self._deployments, namespace, meta["name"], status)
        self._failing[(namespace, meta["name"])] = _Failing(generation, time.monotonic())

    def _check_failing(self) -> None:
        """Resync: report exceeded progress deadlines; heal deployments whose failure rule was removed."""
        for (namespace, name), failing in list(self._failing.items()):
            obj = self._store.get(self._deployments, namespace, name)
            if obj is None:
                self._failing.pop((namespace, name), None)
                continue
            if self._match(_dict(_dict(obj.get("spec")).get("template"))) is None:
                self._dirty.add((self._deployments, namespace, name))
                self._wake.set()
                continue
            deadline = float(_dict(obj.get("spec")).get("progressDeadlineSeconds", 600))
            if failing.deadline_reported or time.monotonic() - failing.since < deadline:
                continue
            failing.deadline_reported = True
            status = copy.deepcopy(_dict(obj.get("status")))
            rs_name = self._replica_set_name(obj)
            status["conditions"] = [
                c
                for c in _list(status.get("conditions"))
                if not (isinstance(c, dict) and c.get("type") == "Progressing")
            ] + [
                _condition(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                )
            ]
            self._write_status(self._deployments, namespace, name, status)

    # Jobs.

    def _reconcile_job(self, namespace: str, name: str) -> None:
        obj = self._store.get(self._jobs, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
        finished = any(
            isinstance(c, dict) and c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in _list(status.get("conditions"))
        )
        if finished or spec.get("suspend"):
            return
        started = status.get("startTime") or _now()
        if not status.get("startTime"):
            self._write_status(self._jobs, namespace, name, {"startTime": started, "active": 1, "ready": 0})
        template = _dict(spec.get("template"))
        matched = self._match(template)
        if matched is not None:
            rule, bad = matched
            labels = {
                **_dict(_dict(template.get("metadata")).get("labels")),
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
                "batch.kubernetes.io/controller-uid": obj["metadata"]["uid"],
                "controller-uid": obj["metadata"]["uid"],
            }
            self._create_failing_pod(obj, f"{name}-{_random_suffix()}", labels, rule, bad)
            message = rule.message_for(str(bad.get("image", "")), str(bad.get("name", "")), name)
            final = {
                "startTime": started,
                "failed": 1,
                "active": 0,
                "ready": 0,
                "conditions": [_condition("Failed", "True", rule.reason, message)],
            }
        else:
            final = {
                "startTime": started,
                "completionTime": _now(),
                "succeeded": int(spec.get("completions") or 1),
                "active": 0,
                "ready": 0,
                "conditions": [
                    _condition(
                        "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"
                    )
                ],
            }
        self._write_status(self._jobs, namespace, name, final)


# --- the HTTP front ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SandboxWrite:
    """One write request as the sandbox saw it (`SandboxCluster.writes`, `GET /_sandbox/writes`)."""

    seq: int
    at: str
    method: str
    path: str
    group: str | None
    resource: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    deployment_id: str | None
    status: int

    def as_dict(self) -> JsonDict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Target:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool


def _parse_path(path: str) -> _Target | None:
    """Parse an object URL; None for discovery and non-Kubernetes paths."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch = bool(rest) and rest[0] == "watch"
    rest = rest[1:] if watch else rest
    if not rest:
        return None
    namespace = None
    # /namespaces/NAME/status is the namespace's own subresource, /namespaces/NAME/PLURAL is namespaced.
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return _Target(group, version, rest[0], namespace, name, subresource, watch)


def _parse_body(raw: bytes, content_type: str = "") -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        if "yaml" not in content_type:
            raise _bad_request("the request body is not valid JSON") from None
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dev dependency
        raise _ApiError(415, "UnsupportedMediaType", "YAML bodies need PyYAML installed") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise _bad_request("the request body is neither JSON nor YAML") from None


def _deployment_id_of(body: Any) -> str | None:
    """The deployment-id annotation a write request sets, for objects and JSON patches alike."""

    def from_meta(meta: Any) -> str | None:
        value = _dict(_dict(meta).get("annotations")).get(DEPLOYMENT_ID_ANNOTATION)
        return value if isinstance(value, str) else None

    if isinstance(body, dict):
        return from_meta(body.get("metadata"))
    escaped = DEPLOYMENT_ID_ANNOTATION.replace("~", "~0").replace("/", "~1")
    for op in _list(body):
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace"):
            continue
        path, value = op.get("path"), op.get("value")
        if path == f"/metadata/annotations/{escaped}" and isinstance(value, str):
            return value
        if path == "/metadata/annotations" and (found := from_meta({"annotations": value})):
            return found
        if path == "/metadata" and (found := from_meta(value)):
            return found
    return None


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


@dataclasses.dataclass(frozen=True)
class _Reply:
    status: int
    body: Any


class SandboxCluster:
    """A Kubernetes API on 127.0.0.1 backed by `kmock.KubernetesEmulator`, with simulated controllers.

    Use as `async with SandboxCluster() as cluster:` (or `start()`/`stop()`);
    `cluster.url` is the API server URL. `port=0` picks a free port.

    Besides the Kubernetes API it serves, for tests in other processes:

    * `GET /_sandbox/writes[?since=SEQ][&deployment_id=ID]` -> JSON list of `SandboxWrite.as_dict()`;
      `DELETE /_sandbox/writes` clears the log;
    * `POST /_sandbox/failure-rules` `{"image_contains", "reason", "message"?}` -> 201;
      `GET` lists the rules, `DELETE` removes them all;
    * `POST /_sandbox/pause-controller`, `POST /_sandbox/resume-controller` -> `{"paused", "enabled"}`;
    * `GET /healthz`, `/livez`, `/readyz` -> `ok`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        controller: bool = True,
        require_namespaces: bool = True,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._emulator = kmock.KubernetesEmulator()
        self._emulator.resources.load_bundled()
        self._store = _Store(self._emulator, require_namespaces=require_namespaces)
        self._rules: list[FailureRule] = []
        self._controller = _Controller(self._store, self._rules) if controller else None
        self._writes: list[SandboxWrite] = []
        self._runner: web.ServerRunner | None = None
        self._entered = False
        for namespace in _INITIAL_NAMESPACES:
            self._store.create(self._store.namespaces, None, {"metadata": {"name": namespace}})

    # Lifecycle.

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the sandbox cluster is already started")
        await self._emulator.__aenter__()  # kmock renders handler errors as Statuses only while entered
        self._entered = True
        self._store.reopen()
        try:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self._host, self._requested_port))
            except OSError:
                sock.close()
                raise
            self._port = int(sock.getsockname()[1])
            server = web.Server(self._handle, handler_cancellation=True, access_log=None)
            self._runner = web.ServerRunner(server, shutdown_timeout=2.0)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
            if self._controller is not None:
                self._controller.start()
        except BaseException:
            await self.stop()
            raise
        log.info("sandbox Kubernetes API listening on %s", self.url)

    async def stop(self) -> None:
        if self._controller is not None:
            await self._controller.stop()
        self._store.close_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._entered:
            self._entered = False
            await self._emulator.__aexit__(None, None, None)
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    def save_state(self, path: Path) -> None:
        """Write every object to `path` (atomically: a crash mid-write keeps the previous file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_text(json.dumps({"objects": self._store.export()}), encoding="utf-8")
        partial.replace(path)

    def load_state(self, path: Path) -> int:
        """Objects saved by `save_state`, back in the store; 0 when there is no file yet."""
        if not path.exists():
            return 0
        document = json.loads(path.read_text(encoding="utf-8"))
        return self._store.restore(document.get("objects") or [])

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the sandbox cluster is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox cluster is not started")
        return self._port

    @property
    def emulator(self) -> kmock.KubernetesEmulator:
        """The kmock emulator: its `objects` hold the cluster state, `resources` the discovery data."""
        return self._emulator

    # In-process inspection and control.

    @property
    def writes(self) -> list[SandboxWrite]:
        return list(self._writes)

    def clear_writes(self) -> None:
        self._writes.clear()

    @property
    def resource_version(self) -> int:
        return self._store.resource_version

    def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> JsonDict | None:
        """One stored object (a copy), e.g. `cluster.get("apps/v1", "deployments", "ns", "web")`."""
        return self._store.get(self._store.kind_for(api_version, plural), namespace, name)

    def list_objects(
        self, api_version: str, plural: str, namespace: str | None = None, labels: str = ""
    ) -> list[JsonDict]:
        """Stored objects (copies), optionally in one namespace and matching a label selector."""
        kind = self._store.kind_for(api_version, plural)
        return self._store.select(_Filter(kind, namespace, tuple(_parse_label_selector(labels))))

    @property
    def failure_rules(self) -> list[FailureRule]:
        return list(self._rules)

    def add_failure_rule(self, image_substring: str, reason: str, message: str = "") -> FailureRule:
        """Make pods whose image contains `image_substring` fail with `reason` (affects new rollouts)."""
        if not image_substring or not reason:
            raise ValueError("a failure rule needs an image substring and a reason")
        rule = FailureRule(image_substring, reason, message)
        self._rules.append(rule)
        return rule

    def clear_failure_rules(self) -> None:
        """Remove all rules; deployments failing because of one recover on the next resync."""
        self._rules.clear()

    def pause_controller(self) -> None:
        if self._controller is not None:
            self._controller.pause()

    def resume_controller(self) -> None:
        if self._controller is not None:
            self._controller.resume()

    @property
    def controller_paused(self) -> bool:
        return self._controller is not None and self._controller.paused

    # Request handling.

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            if request.path == "/_sandbox" or request.path.startswith("/_sandbox/"):
                return await self._serve_sandbox(request)
            if request.path in ("/healthz", "/livez", "/readyz") and request.method == "GET":
                return web.Response(text="ok")
            target = _parse_path(request.path)
            if target is None:
                response = await self._forward(request)
                self._record(request, None, b"", response.status, None)
                return response
            raw = await request.read()
            try:
                kind = self._resolve(target)
                if request.method == "GET" and (target.watch or _truthy(request.query.get("watch"))):
                    return await self._serve_watch(request, kind, target)
                reply = self._serve_object(request, kind, target, raw)
            except _ApiError as exc:
                reply = _Reply(exc.code, exc.body())
            self._record(request, target, raw, reply.status, reply.body)
            if isinstance(reply.body, str):
                return web.Response(text=reply.body, status=reply.status)
            return web.json_response(reply.body, status=reply.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("sandbox failed on %s %s", request.method, request.path)
            body = _status_body(500, "InternalError", f"sandbox internal error: {exc!r}")
            return web.json_response(body, status=500)

    async def _forward(self, request: web.BaseRequest) -> web.StreamResponse:
        """Discovery, /version and unknown URLs: the emulator's own handler, in-process."""
        if request.path != "/" and request.path.endswith("/"):
            # kubernetes_asyncio asks for `/version/` and `/apis/`; kmock routes only the exact paths.
            request = request.clone(rel_url=request.rel_url.with_path(request.path.rstrip("/")))
        response = await self._emulator(request)
        self._emulator.errors.clear()  # kmock keeps them for test assertions; we answered them already
        if response.status == 404 and isinstance(response, web.Response) and not response.prepared:
            return _gone_resource().response()
        return response

    def _record(
        self, request: web.BaseRequest, target: _Target | None, raw: bytes, status: int, reply: Any
    ) -> None:
        if request.method not in _WRITE_METHODS:
            return
        try:
            body = _parse_body(raw, request.content_type)
        except _ApiError:
            body = None
        name = target.name if target is not None else None
        if name is None and request.method == "POST":
            reply_meta = _dict(_dict(reply).get("metadata")) if status < 300 else {}
            found = reply_meta.get("name") or _dict(_dict(body).get("metadata")).get("name")
            name = found if isinstance(found, str) else None
        namespace = target.namespace if target is not None else None
        self._writes.append(
            SandboxWrite(
                seq=len(self._writes) + 1,
                at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                method=request.method,
                path=request.path,
                group=target.group if target is not None else None,
                resource=target.plural if target is not None else None,
                namespace=namespace,
                name=name,
                subresource=target.subresource if target is not None else None,
                deployment_id=_deployment_id_of(body),
                status=status,
            )
        )

    def _resolve(self, target: _Target) -> _Kind:
        """The kind an object URL addresses, or the apiserver's 404 for URLs it does not serve."""
        kind = self._store.kind(target.group, target.version, target.plural)
        if kind is None or (target.namespace is not None and not kind.namespaced):
            raise _gone_resource()
        if target.subresource is None or (target.subresource == "status" and kind.has_status):
            return kind
        if target.subresource == "log" and kind.is_("", "pods"):
            return kind
        raise _gone_resource()

    def _serve_object(self, request: web.BaseRequest, kind: _Kind, target: _Target, raw: bytes) -> _Reply:
        """Everything on an object URL except watches."""
        query = request.query
        method = request.method
        namespace = target.namespace
        dry_run = "dryRun" in query
        if target.name is None:
            if method == "GET":
                flt = _Filter.from_query(kind, namespace, query)
                items = self._store.select(flt)
                meta = {"resourceVersion": str(self._store.resource_version)}
                return _Reply(
                    200,
                    {
                        "kind": f"{kind.kind}List",
                        "apiVersion": kind.api_version,
                        "metadata": meta,
                        "items": items,
                    },
                )
            if method == "POST":
                return _Reply(201, self._store.create(kind, namespace, _parse_body(raw), dry_run=dry_run))
            if method == "DELETE":
                flt = _Filter.from_query(kind, namespace, query)
                deleted = [
                    self._store.delete(
                        kind, obj["metadata"].get("namespace"), obj["metadata"]["name"], dry_run=dry_run
                    )
                    for obj in self._store.select(flt)
                ]
                return _Reply(
                    200,
                    {
                        "kind": f"{kind.kind}List",
                        "apiVersion": kind.api_version,
                        "metadata": {},
                        "items": deleted,
                    },
                )
            raise _method_not_allowed()

        name = target.name
        if target.subresource == "log":
            if method != "GET":
                raise _method_not_allowed()
            return self._serve_log(kind, namespace, name)
        if method == "GET":
            obj = self._store.get(kind, namespace, name)
            if obj is None:
                raise kind.not_found(name)
            return _Reply(200, obj)
        if method == "PATCH":
            return self._serve_patch(request, kind, target, raw)
        if method == "PUT":
            body = _parse_body(raw)
            if not isinstance(body, dict):
                raise _bad_request("the request body must be a JSON object")
            body_name = _dict(body.get("metadata")).get("name")
            if body_name not in (None, name):
                raise _bad_request(
                    f"the name of the object ({body_name}) does not match the name on the URL ({name})"
                )
            expected = _dict(body.get("metadata")).get("resourceVersion")
            obj = self._store.update(
                kind,
                namespace,
                name,
                target.subresource,
                lambda _: copy.deepcopy(body),
                expected_rv=expected,
                dry_run=dry_run,
            )
            return _Reply(200, obj)
        if method == "DELETE" and target.subresource is None:
            options = _dict(_parse_body(raw))
            propagation = str(
                query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
            )
            result = self._store.delete(
                kind,
                namespace,
                name,
                propagation=propagation,
                preconditions=_dict(options.get("preconditions")),
                dry_run=dry_run,
            )
            return _Reply(200, result)
        raise _method_not_allowed()

    def _serve_patch(self, request: web.BaseRequest, kind: _Kind, target: _Target, raw: bytes) -> _Reply:
        assert target.name is not None
        content_type = request.content_type.lower()
        query = request.query
        dry_run = "dryRun" in query
        namespace, name, sub = target.namespace, target.name, target.subresource
        if content_type == "application/apply-patch+yaml":
            return self._serve_apply(kind, namespace, name, sub, _parse_body(raw, content_type), query)
        patch = _parse_body(raw)
        expected: Any = None
        mutate: _Mutation
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise _bad_request("a JSON patch must be a JSON array")
            operations = patch

            def mutate(obj: JsonDict) -> Any:
                return _json_patch(obj, operations)

        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise _bad_request("a merge patch must be a JSON object")
            expected = _dict(patch.get("metadata")).get("resourceVersion")
            merge = _merge_patch if content_type == "application/merge-patch+json" else _strategic_merge
            changes = patch

            def mutate(obj: JsonDict) -> Any:
                return merge(obj, changes)

        else:
            raise _ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {content_type}",
            )
        return _Reply(
            200, self._store.update(kind, namespace, name, sub, mutate, expected_rv=expected, dry_run=dry_run)
        )

    def _serve_apply(
        self,
        kind: _Kind,
        namespace: str | None,
        name: str,
        sub: str | None,
        applied: Any,
        query: Mapping[str, str],
    ) -> _Reply:
        """Server-side apply, approximated for one field manager (see the module docstring)."""
        manager = query.get("fieldManager")
        if not manager:
            raise _bad_request(
                "PatchOptions.meta.k8s.io is invalid:"
                " fieldManager: Required value: is required for apply patch"
            )
        if not isinstance(applied, dict):
            raise _bad_request("an apply patch must be an object")
        body_name = _dict(applied.get("metadata")).get("name")
        if body_name not in (None, name):
            raise _bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        dry_run = "dryRun" in query
        if self._store.get(kind, namespace, name) is None:
            if sub is not None:
                raise kind.not_found(name)
            body = copy.deepcopy(applied)
            body.setdefault("metadata", {})["name"] = name
            created = self._store.create(kind, namespace, body, dry_run=dry_run)
            if not dry_run:
                self._store.remember_applied(
                    kind, namespace, name, manager, sub, _without_system_metadata(applied)
                )
            return _Reply(201, created)
        previous = self._store.applied(kind, namespace, name, manager, sub)
        config = _without_system_metadata(applied)

        def mutate(obj: JsonDict) -> Any:
            return _merge_patch(_merge_patch(obj, _removals(previous, config)), config)

        expected = _dict(applied.get("metadata")).get("resourceVersion")
        updated = self._store.update(
            kind, namespace, name, sub, mutate, expected_rv=expected, dry_run=dry_run
        )
        if not dry_run:
            self._store.remember_applied(kind, namespace, name, manager, sub, config)
        return _Reply(200, updated)

    def _serve_log(self, kind: _Kind, namespace: str | None, name: str) -> _Reply:
        pod = self._store.get(kind, namespace, name)
        if pod is None:
            raise kind.not_found(name)
        for status in _list(_dict(pod.get("status")).get("containerStatuses")):
            waiting = _dict(_dict(_dict(status).get("state")).get("waiting"))
            if waiting:
                container = _dict(status).get("name")
                raise _bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: {waiting.get("reason")}'
                )
        return _Reply(200, "")

    async def _serve_watch(
        self, request: web.BaseRequest, kind: _Kind, target: _Target
    ) -> web.StreamResponse:
        query = request.query
        flt = _Filter.from_query(kind, target.namespace, query)
        if target.name is not None:
            flt = dataclasses.replace(flt, fields=(*flt.fields, ("metadata.name", True, target.name)))
        timeout: float | None = None
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError:
                raise _bad_request("timeoutSeconds must be a number") from None
        send_initial = _truthy(query.get("sendInitialEvents"))
        first, queue = self._store.watch(flt, query.get("resourceVersion"), send_initial)
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            await response.prepare(request)
            for event in first:
                await response.write(json.dumps(event).encode() + b"\n")
            if send_initial and _truthy(query.get("allowWatchBookmarks")):
                bookmark = {
                    "kind": kind.kind,
                    "apiVersion": kind.api_version,
                    "metadata": {
                        "resourceVersion": str(self._store.resource_version),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                await response.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await queue.get()
                except TimeoutError:
                    break
                if item is None:
                    break
                if (event_out := flt.event_for(item)) is not None:
                    await response.write(json.dumps(event_out).encode() + b"\n")
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away (or the server closed the transport while stopping)
        finally:
            self._store.unwatch(queue)
        return response

    async def _serve_sandbox(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path.rstrip("/"), request.method
        if path == "/_sandbox/writes":
            if method == "GET":
                since_text = request.query.get("since", "0")
                since = int(since_text) if since_text.isdigit() else 0
                wanted = request.query.get("deployment_id")
                writes = [w for w in self._writes if w.seq > since and wanted in (None, w.deployment_id)]
                return web.json_response([write.as_dict() for write in writes])
            if method == "DELETE":
                count = len(self._writes)
                self.clear_writes()
                return web.json_response({"cleared": count})
        elif path == "/_sandbox/failure-rules":
            if method == "GET":
                return web.json_response([rule.as_dict() for rule in self._rules])
            if method == "POST":
                try:
                    body = _dict(_parse_body(await request.read()))
                    rule = self.add_failure_rule(
                        str(body.get("image_contains") or ""),
                        str(body.get("reason") or ""),
                        str(body.get("message") or ""),
                    )
                except (_ApiError, ValueError) as exc:
                    return _bad_request(f"expected {{image_contains, reason, message?}}: {exc}").response()
                return web.json_response(rule.as_dict(), status=201)
            if method == "DELETE":
                count = len(self._rules)
                self.clear_failure_rules()
                return web.json_response({"cleared": count})
        elif path in ("/_sandbox/pause-controller", "/_sandbox/resume-controller"):
            if method == "POST":
                self.pause_controller() if path.endswith("pause-controller") else self.resume_controller()
                return web.json_response(
                    {"paused": self.controller_paused, "enabled": self._controller is not None}
                )
        else:
            return _gone_resource().response()
        return _ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}").response()


# --- kubeconfig and CLI ----------------------------------------------------------------------------


def write_kubeconfig(path: str | Path, url: str, namespace: str | None = None) -> Path:
    """Write a kubeconfig for the sandbox: one cluster (`url`, TLS unverified), a dummy token user."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
    context_namespace = f"\n    namespace: {q(namespace)}" if namespace else ""
    text = f"""\
apiVersion: v1
kind: Config
clusters:
- name: landfall-sandbox
  cluster:
    server: {q(url)}
    insecure-skip-tls-verify: true
users:
- name: landfall-sandbox
  user:
    token: {q("sandbox-token")}
contexts:
- name: landfall-sandbox
  context:
    cluster: landfall-sandbox
    user: landfall-sandbox{context_namespace}
current-context: landfall-sandbox
"""
    target.write_text(text, encoding="utf-8")
    target.chmod(0o600)
    return target


async def _serve_forever(args: argparse.Namespace) -> None:
    cluster = SandboxCluster(
        host=args.host,
        port=args.port,
        controller=not args.no_controller,
        require_namespaces=not args.lenient_namespaces,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.state:
        restored = cluster.load_state(args.state)
        if restored:
            print(f"sandbox: {restored} objects restored from {args.state}", flush=True)
    async with cluster:
        if args.kubeconfig:
            write_kubeconfig(args.kubeconfig, cluster.url, args.namespace)
        print(f"sandbox Kubernetes API listening on {cluster.url}", flush=True)
        saved = cluster.resource_version
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.save_seconds)
            # Saved on every change, at most every few seconds, and at exit: a SIGKILL loses
            # at most the last interval.
            if args.state and cluster.resource_version != saved:
                cluster.save_state(args.state)
                saved = cluster.resource_version
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m libs.devstack.sandbox_cluster",
        description="An in-memory Kubernetes API with simulated controllers, for machines without a cluster.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the printed URL)")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig pointing at the sandbox here")
    parser.add_argument("--namespace", help="the kubeconfig context's namespace")
    parser.add_argument("--no-controller", action="store_true", help="do not simulate controllers")
    parser.add_argument(
        "--lenient-namespaces",
        action="store_true",
        help="allow objects in namespaces that were never created",
    )
    parser.add_argument(
        "--state", type=Path, help="keep the objects in this JSON file: loaded at start, saved while running"
    )
    parser.add_argument("--save-seconds", type=float, default=2.0, help="how often changes are saved")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s sandbox %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve_forever(args))
    except OSError as exc:
        raise SystemExit(f"sandbox: cannot listen on {args.host}:{args.port}: {exc}") from exc


if __name__ == "__main__":
    main()
