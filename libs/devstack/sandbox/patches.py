"""The patch flavours a Kubernetes client sends, applied to plain JSON documents.

JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch
(kubernetes_asyncio's default for dict bodies: lists with a patch merge key such as
containers/env/volumes merge *by key*, as in a real cluster, so an env var removed from a
desired manifest survives a strategic patch there and here), and the pieces of
server-side apply (what a field manager applied before and omits now is removed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from libs.devstack.sandbox.errors import ApiError
from libs.devstack.sandbox.values import JsonDict, json_array, json_copy

SYSTEM_METADATA: Final = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


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
        return json_copy(current) + [item for item in patch if item not in current]
    key = _smp_merge_key(field, [*current, *patch])
    replace = any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch)
    if key is None or replace:
        return [
            _strip_directives(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)
        ]
    result = json_copy(current)
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
            result[index] = strategic_merge(result[index], item)
        else:
            result.append(_strip_directives(item))
    return result


def strategic_merge(target: Any, patch: JsonDict) -> JsonDict:
    """Strategic merge patch for the built-in types (see `_SMP_MERGE_KEYS`)."""
    if patch.get("$patch") == "replace":
        replaced: JsonDict = _strip_directives(patch)
        return replaced
    result: JsonDict = json_copy(target) if isinstance(target, dict) else {}
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
            result[key] = strategic_merge(result.get(key), value)
        elif isinstance(value, list):
            result[key] = _smp_list(key, json_array(result.get(key)), value)
        else:
            result[key] = value
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise ApiError(422, "Invalid", f"invalid JSON pointer: {path!r}")
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
            raise ApiError(422, "Invalid", f"JSON patch path not found: /{'/'.join(tokens)}")
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
        raise ApiError(422, "Invalid", f"cannot add at JSON patch path /{'/'.join(tokens)}")
    return doc


def _pointer_remove(doc: Any, tokens: Sequence[str]) -> Any:
    if not tokens:
        raise ApiError(422, "Invalid", "cannot remove the whole document")
    parent = _pointer_get(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise ApiError(422, "Invalid", f"JSON patch path not found: /{'/'.join(tokens)}")


def json_patch(doc: Any, operations: list[Any]) -> Any:
    """RFC 6902 JSON patch."""
    for operation in operations:
        if not isinstance(operation, dict):
            raise ApiError(422, "Invalid", f"invalid JSON patch operation: {operation!r}")
        op = operation.get("op")
        tokens = _pointer(operation.get("path"))
        if op == "add":
            doc = _pointer_add(doc, tokens, json_copy(operation.get("value")))
        elif op == "remove":
            _pointer_remove(doc, tokens)
        elif op == "replace":
            _pointer_remove(doc, tokens) if tokens else None
            doc = _pointer_add(doc, tokens, json_copy(operation.get("value")))
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"))
            value = _pointer_remove(doc, source) if op == "move" else json_copy(_pointer_get(doc, source))
            doc = _pointer_add(doc, tokens, value)
        elif op == "test":
            if _pointer_get(doc, tokens) != operation.get("value"):
                raise ApiError(422, "Invalid", f"JSON patch test failed at {operation.get('path')}")
        else:
            raise ApiError(422, "Invalid", f"unknown JSON patch operation: {op!r}")
    return doc


def removals(previous: Any, applied: Any) -> JsonDict:
    """A merge patch that deletes what a field manager applied before and no longer applies."""
    patch: JsonDict = {}
    if not isinstance(previous, dict) or not isinstance(applied, dict):
        return patch
    for key, old in previous.items():
        if key not in applied:
            patch[key] = None
        elif isinstance(old, dict) and isinstance(applied[key], dict):
            nested = removals(old, applied[key])
            if nested:
                patch[key] = nested
    return patch


def without_system_metadata(obj: JsonDict) -> JsonDict:
    result = json_copy(obj)
    meta = result.get("metadata")
    if isinstance(meta, dict):
        for field in (*SYSTEM_METADATA, "managedFields"):
            meta.pop(field, None)
    return result
