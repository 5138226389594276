"""The apiserver's storage semantics over the emulator's `objects`: versions, events, watches.

Subtle parts:
- Every write is synchronous between reading the stored object and publishing the event
  (no `await`), so writes are atomic on the event loop without a lock, and a watch
  registers its queue in the same step that takes its snapshot or replays the event log:
  no event can fall between the two.
- `metadata.resourceVersion` is one global counter; every stored change bumps it, a no-op
  patch does not (and sends no event). A watch with `resourceVersion=N` replays events
  after N from a bounded log and gets an ERROR 410 `Expired` event when N fell out of it.
- `metadata.generation` starts at 1 and grows when anything besides metadata and status
  changes; `/status` writes change only `.status`, and the main endpoint ignores
  `.status` for resources that have a status subresource.
- Namespaces must exist before namespaced objects are created in them
  (`require_namespaces=False` relaxes it). Deleting a namespace deletes its content at
  once; deletion cascades to objects whose ownerReferences name the deleted uid unless
  the propagation policy is Orphan; objects with finalizers only get a deletionTimestamp.
- Lists read a per-kind, per-namespace index of live names instead of scanning every
  object kmock stores (with a thousand data planes, scans were most of the CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import kmock

from libs.devstack.sandbox.errors import ApiError, bad_request, method_not_allowed, status_body
from libs.devstack.sandbox.kinds import Kind, apply_defaults, initial_status, validate_name
from libs.devstack.sandbox.owners import Dependents, owner_uids
from libs.devstack.sandbox.patches import SYSTEM_METADATA
from libs.devstack.sandbox.selectors import Filter
from libs.devstack.sandbox.values import JsonDict, json_copy, json_object, random_suffix, timestamp

log = logging.getLogger(__name__)

_EVENT_LOG_SIZE: Final = 20_000
_HISTORY_LIMIT: Final = 4  # versions kept per object in the emulator's storage


@dataclasses.dataclass(frozen=True)
class Event:
    rv: int
    kind: Kind
    type: str  # ADDED, MODIFIED, DELETED
    obj: JsonDict  # never mutated after publishing
    old: JsonDict | None = None


_ObjectKey = tuple[kmock.resource, str | None, str]
Mutation = Callable[[JsonDict], Any]


class Store:
    """The apiserver's storage semantics over the emulator's `objects`.

    All methods are synchronous: a write reads, changes and publishes without
    yielding to the event loop, which makes it atomic for every other coroutine.
    Stored versions and published events are never mutated; readers get copies.
    """

    def __init__(self, emulator: kmock.KubernetesEmulator, *, require_namespaces: bool) -> None:
        self.emulator = emulator
        self.require_namespaces = require_namespaces
        self._rv = 0
        self._kinds: dict[tuple[str, str, str], Kind | None] = {}
        self._log: deque[Event] = deque(maxlen=_EVENT_LOG_SIZE)
        self._log_floor = 0  # events with rv <= this are gone from the log
        self._watchers: set[asyncio.Queue[Event | None]] = set()
        self._closed = False  # set while stopping: new watches end at once
        self._listeners: list[Callable[[Event], None]] = []
        # Last-applied configurations by object, then by (subresource, field manager).
        self._applied: dict[tuple[str, str, str | None, str], dict[tuple[str | None, str], JsonDict]] = {}
        self._dependents = Dependents()  # by owner uid, for garbage collection (owners.py)
        # Live object names by kind and namespace: lists read these instead of scanning every object
        # kmock stores (with a thousand data planes' objects, scans were most of the sandbox's CPU).
        self._names: dict[tuple[Kind, str | None], set[str]] = {}
        namespaces = self.kind("", "v1", "namespaces")
        assert namespaces is not None, "kmock's bundled resources lack v1/namespaces"
        self.namespaces = namespaces

    # Kinds.

    def kind(self, group: str, version: str, plural: str) -> Kind | None:
        cache_key = (group, version, plural)
        if cache_key not in self._kinds:
            ref = kmock.resource(group, version, plural)
            found: Kind | None = None
            if ref in self.emulator.resources:
                info = self.emulator.resources[ref]
                found = Kind(
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

    def kind_for(self, api_version: str, plural: str) -> Kind:
        group, _, version = api_version.rpartition("/")
        kind = self.kind(group, version, plural)
        if kind is None:
            raise LookupError(f"unknown resource {plural} in {api_version}")
        return kind

    # Reading.

    @property
    def resource_version(self) -> int:
        return self._rv

    def _key(self, kind: Kind, namespace: str | None, name: str) -> _ObjectKey:
        return (kind.ref, namespace if kind.namespaced else None, name)

    def _load(self, kind: Kind, namespace: str | None, name: str) -> JsonDict | None:
        key = self._key(kind, namespace, name)
        if key not in self.emulator.objects:
            return None
        stored = self.emulator.objects[key]
        return None if stored.deleted else stored.raw

    def get(self, kind: Kind, namespace: str | None, name: str) -> JsonDict | None:
        found = self._load(kind, namespace, name)
        return json_copy(found) if found is not None else None

    def live(self) -> list[tuple[Kind, JsonDict]]:
        result: list[tuple[Kind, JsonDict]] = []
        for (ref, _, _), stored in list(self.emulator.objects.items()):
            kind = self.kind(ref.group or "", ref.version or "", ref.plural or "")
            if kind is not None and not stored.deleted:
                result.append((kind, stored.raw))
        return result

    def select(self, flt: Filter, where: Callable[[JsonDict], bool] | None = None) -> list[JsonDict]:
        """Copies of the live objects `flt` matches (and `where`, given the stored, uncopied object:
        it must not change it), sorted by namespace and name. Only matches are copied: a copy of
        every Pod in a namespace per reconcile was most of the sandbox's CPU under load."""
        namespaces = (
            [flt.namespace if flt.kind.namespaced else None]
            if flt.namespace is not None or not flt.kind.namespaced
            else [ns for kind, ns in self._names if kind == flt.kind]
        )
        named = flt.exact_name()
        found = []
        for namespace in namespaces:
            names = self._names.get((flt.kind, namespace), set())
            # `fieldSelector=metadata.name=X` (a watch of one object) looks up X, not every name.
            for name in ([named] if named in names else []) if named is not None else list(names):
                obj = self._load(flt.kind, namespace, name)
                if obj is not None and flt.matches(obj) and (where is None or where(obj)):
                    found.append(obj)
        found.sort(
            key=lambda obj: (json_object(obj["metadata"]).get("namespace") or "", obj["metadata"]["name"])
        )
        return json_copy(found)

    def owned(self, kind: Kind, namespace: str | None, owner_uid: str) -> list[str]:
        """Names of the live objects of `kind` in `namespace` whose ownerReferences name
        `owner_uid`, from the owner index (no scan of the namespace): a rollout replaces its
        Deployment's Pods, and the namespace holds every other component's Pods too."""
        names = []
        for dep_kind, dep_namespace, name in self._dependents.of(owner_uid):
            if dep_kind != kind or dep_namespace != namespace:
                continue
            obj = self._load(kind, namespace, name)
            if obj is not None and owner_uid in owner_uids(obj["metadata"]):
                names.append(name)
        return names

    # Watching.

    def watch(
        self, flt: Filter, since: str | None, initial: bool
    ) -> tuple[list[JsonDict], asyncio.Queue[Event | None]]:
        """Register a watcher; returns the events to send first and the queue of the later ones."""
        first: list[JsonDict] = []
        if initial or since in (None, "", "0"):
            first = [{"type": "ADDED", "object": obj} for obj in self.select(flt)]
        else:
            try:
                after = int(since or "")
            except ValueError as exc:
                raise ApiError(400, "BadRequest", f"invalid resourceVersion: {since!r}") from exc
            if after < self._log_floor:
                expired = status_body(
                    410, "Expired", f"too old resource version: {after} ({self._log_floor})"
                )
                first = [{"type": "ERROR", "object": expired}]
            else:
                for event in self._log:
                    if event.rv > after and (translated := flt.event_for(event)) is not None:
                        first.append(translated)
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._watchers.add(queue)
        if self._closed:
            queue.put_nowait(None)
        return first, queue

    def unwatch(self, queue: asyncio.Queue[Event | None]) -> None:
        self._watchers.discard(queue)

    # Persistence (for `make up`: the sandbox's objects survive a restart like the rest of the state).

    def export(self) -> list[JsonDict]:
        """Every live object with its kind, as JSON-ready entries (see `restore`)."""
        return [
            {
                "group": kind.group,
                "version": kind.version,
                "plural": kind.plural,
                "object": json_copy(obj),
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

    def listen(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[Event], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # Writing.

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _save(self, kind: Kind, obj: JsonDict) -> None:
        meta = obj["metadata"]
        key = self._key(kind, meta.get("namespace"), meta["name"])
        self._names.setdefault((kind, key[1]), set()).add(meta["name"])
        self._dependents.saved((kind, key[1], meta["name"]), meta)
        if key in self.emulator.objects:
            stored = self.emulator.objects[key]
            stored.history.append(obj)
            if len(stored.history) > _HISTORY_LIMIT:
                del stored.history[: len(stored.history) - _HISTORY_LIMIT]
        else:
            self.emulator.objects[key] = obj

    def _publish(self, kind: Kind, type_: str, obj: JsonDict, old: JsonDict | None = None) -> None:
        event = Event(int(obj["metadata"]["resourceVersion"]), kind, type_, obj, old)
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

    def _generate_name(self, kind: Kind, namespace: str | None, prefix: str) -> str:
        prefix = prefix[:58]
        while True:
            name = prefix + random_suffix()
            if self._load(kind, namespace, name) is None:
                return name

    def create(self, kind: Kind, namespace: str | None, body: Any, *, dry_run: bool = False) -> JsonDict:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        obj: JsonDict = json_copy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if kind.namespaced:
            if not namespace:
                raise method_not_allowed()
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
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
        validate_name(kind, name)
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
        meta["creationTimestamp"] = timestamp()
        if kind.namespaced:
            meta["generation"] = 1
        if kind.has_status:
            obj["status"] = initial_status(kind)
        if kind == self.namespaces:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            obj["spec"] = {"finalizers": ["kubernetes"]}
        apply_defaults(kind, obj)
        if dry_run:
            return obj
        meta["resourceVersion"] = self._next_rv()
        self._save(kind, obj)
        self._publish(kind, "ADDED", obj)
        return json_copy(obj)

    def update(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        subresource: str | None,
        mutate: Mutation,
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
        candidate = mutate(json_copy(current))
        if not isinstance(candidate, dict):
            raise kind.invalid(name, "the patched object is not a JSON object")
        new = self._protect(kind, current, candidate, subresource)
        if subresource is None:
            apply_defaults(kind, new)
        if new == current:
            return json_copy(current)  # a no-op: no new resourceVersion, no event
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
        return json_copy(new)

    @staticmethod
    def _protect(kind: Kind, current: JsonDict, candidate: JsonDict, subresource: str | None) -> JsonDict:
        """Keep what a write to this endpoint cannot change."""
        if subresource == "status":
            new = json_copy(current)
            if candidate.get("status") is not None:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
            return new
        meta = candidate.get("metadata")
        if not isinstance(meta, dict):
            meta = candidate["metadata"] = {}
        for field in SYSTEM_METADATA:
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        candidate["apiVersion"] = current["apiVersion"]
        candidate["kind"] = current["kind"]
        if kind.has_status:
            if "status" in current:
                candidate["status"] = json_copy(current["status"])
            else:
                candidate.pop("status", None)
        return candidate

    def delete(
        self,
        kind: Kind,
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
            return json_copy(current)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return json_copy(current)
            pending = json_copy(current)
            pending["metadata"].update(deletionTimestamp=timestamp(), deletionGracePeriodSeconds=0)
            pending["metadata"]["resourceVersion"] = self._next_rv()
            self._save(kind, pending)
            self._publish(kind, "MODIFIED", pending, old=current)
            return json_copy(pending)
        if kind == self.namespaces:
            for other_kind, obj in self.live():
                if other_kind.namespaced and obj["metadata"].get("namespace") == name:
                    with contextlib.suppress(ApiError):
                        self.delete(other_kind, name, obj["metadata"]["name"], propagation="Orphan")
            terminating = json_copy(current)
            terminating["metadata"]["deletionTimestamp"] = timestamp()
            terminating["status"] = {"phase": "Terminating"}
            self._finish_delete(kind, current, propagation="Orphan")
            return terminating
        gone = self._finish_delete(kind, current, propagation=propagation)
        details = {**kind.details(name), "uid": gone["metadata"]["uid"]}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _finish_delete(self, kind: Kind, current: JsonDict, *, propagation: str) -> JsonDict:
        meta = current["metadata"]
        namespace, name, uid = meta.get("namespace"), meta["name"], meta.get("uid")
        final = json_copy(current)
        final["metadata"]["resourceVersion"] = self._next_rv()
        key = self._key(kind, namespace, name)
        stored = self.emulator.objects[key]
        stored.delete()
        self._names.get((kind, key[1]), set()).discard(name)
        if len(stored.history) > _HISTORY_LIMIT:
            del stored.history[: len(stored.history) - _HISTORY_LIMIT]
        self._applied.pop((kind.group, kind.plural, namespace, name), None)
        self._dependents.deleted((kind, key[1], name), meta)
        self._publish(kind, "DELETED", final)
        dependents = self._dependents.take(uid)
        if propagation != "Orphan":
            for other_kind, other_namespace, other_name in dependents:
                obj = self._load(other_kind, other_namespace, other_name)
                if obj is None or uid not in owner_uids(obj["metadata"]):
                    continue
                if kind.namespaced and other_namespace != namespace:
                    continue
                with contextlib.suppress(ApiError):
                    self.delete(other_kind, other_namespace, other_name)
        return json_copy(final)

    # Server-side apply bookkeeping (one last-applied configuration per field manager).

    def applied(
        self, kind: Kind, namespace: str | None, name: str, manager: str, sub: str | None
    ) -> JsonDict | None:
        return self._applied.get((kind.group, kind.plural, namespace, name), {}).get((sub, manager))

    def remember_applied(
        self, kind: Kind, namespace: str | None, name: str, manager: str, sub: str | None, config: JsonDict
    ) -> None:
        by_manager = self._applied.setdefault((kind.group, kind.plural, namespace, name), {})
        by_manager[(sub, manager)] = json_copy(config)


def _spec_of(obj: Mapping[str, Any]) -> JsonDict:
    """Everything whose change bumps metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
