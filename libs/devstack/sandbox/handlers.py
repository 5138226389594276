"""What the apiserver does on object URLs: get, list, watch, create, update, patch, delete.

The sandbox serves every object URL here itself instead of passing it to kmock (see
README.md for why). Subtle parts: a create answers 201 (kmock says 200); server-side apply
is approximated for one field manager per object (fields it applied before and omits now
are removed, lists are replaced, a missing object is created); a watch honours
`timeoutSeconds`, `resourceVersion` and `sendInitialEvents` with the closing BOOKMARK.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from libs.devstack.sandbox.errors import ApiError, bad_request, gone_resource, method_not_allowed
from libs.devstack.sandbox.kinds import Kind
from libs.devstack.sandbox.patches import (
    json_patch,
    removals,
    strategic_merge,
    without_system_metadata,
)
from libs.devstack.sandbox.selectors import Filter
from libs.devstack.sandbox.store import Mutation, Store
from libs.devstack.sandbox.values import JsonDict, json_array, json_copy, json_object
from libs.runtime.mergepatch import merge_patch


@dataclasses.dataclass(frozen=True)
class Target:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool


def parse_path(path: str) -> Target | None:
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
    return Target(group, version, rest[0], namespace, name, subresource, watch)


def parse_body(raw: bytes, content_type: str = "") -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        if "yaml" not in content_type:
            raise bad_request("the request body is not valid JSON") from None
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dev dependency
        raise ApiError(415, "UnsupportedMediaType", "YAML bodies need PyYAML installed") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise bad_request("the request body is neither JSON nor YAML") from None


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: Any


def _named_object(body: Any, name: str, not_an_object: str) -> JsonDict:
    """`body` if it is an object whose name (if it has one) is `name`; else the apiserver's 400."""
    if not isinstance(body, dict):
        raise bad_request(not_an_object)
    body_name = json_object(body.get("metadata")).get("name")
    if body_name not in (None, name):
        raise bad_request(f"the name of the object ({body_name}) does not match the name on the URL ({name})")
    return body


class ObjectApi:
    """What the apiserver does on object URLs, over one store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def resolve(self, target: Target) -> Kind:
        """The kind an object URL addresses, or the apiserver's 404 for URLs it does not serve."""
        kind = self._store.kind(target.group, target.version, target.plural)
        if kind is None or (target.namespace is not None and not kind.namespaced):
            raise gone_resource()
        if target.subresource is None or (target.subresource == "status" and kind.has_status):
            return kind
        if target.subresource == "log" and kind.is_("", "pods"):
            return kind
        raise gone_resource()

    def serve(self, request: web.BaseRequest, kind: Kind, target: Target, raw: bytes) -> Reply:
        """Everything on an object URL except watches."""
        query = request.query
        method = request.method
        namespace = target.namespace
        dry_run = "dryRun" in query
        if target.name is None:
            if method == "GET":
                flt = Filter.from_query(kind, namespace, query)
                items = self._store.select(flt)
                meta = {"resourceVersion": str(self._store.resource_version)}
                return Reply(
                    200,
                    {
                        "kind": f"{kind.kind}List",
                        "apiVersion": kind.api_version,
                        "metadata": meta,
                        "items": items,
                    },
                )
            if method == "POST":
                return Reply(201, self._store.create(kind, namespace, parse_body(raw), dry_run=dry_run))
            if method == "DELETE":
                flt = Filter.from_query(kind, namespace, query)
                deleted = [
                    self._store.delete(
                        kind, obj["metadata"].get("namespace"), obj["metadata"]["name"], dry_run=dry_run
                    )
                    for obj in self._store.select(flt)
                ]
                return Reply(
                    200,
                    {
                        "kind": f"{kind.kind}List",
                        "apiVersion": kind.api_version,
                        "metadata": {},
                        "items": deleted,
                    },
                )
            raise method_not_allowed()

        name = target.name
        if target.subresource == "log":
            if method != "GET":
                raise method_not_allowed()
            return self._serve_log(kind, namespace, name)
        if method == "GET":
            obj = self._store.get(kind, namespace, name)
            if obj is None:
                raise kind.not_found(name)
            return Reply(200, obj)
        if method == "PATCH":
            return self._serve_patch(request, kind, target, raw)
        if method == "PUT":
            body = _named_object(parse_body(raw), name, "the request body must be a JSON object")
            expected = json_object(body.get("metadata")).get("resourceVersion")
            obj = self._store.update(
                kind,
                namespace,
                name,
                target.subresource,
                lambda _: json_copy(body),
                expected_rv=expected,
                dry_run=dry_run,
            )
            return Reply(200, obj)
        if method == "DELETE" and target.subresource is None:
            options = json_object(parse_body(raw))
            propagation = str(
                query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
            )
            result = self._store.delete(
                kind,
                namespace,
                name,
                propagation=propagation,
                preconditions=json_object(options.get("preconditions")),
                dry_run=dry_run,
            )
            return Reply(200, result)
        raise method_not_allowed()

    def _serve_patch(self, request: web.BaseRequest, kind: Kind, target: Target, raw: bytes) -> Reply:
        assert target.name is not None
        content_type = request.content_type.lower()
        query = request.query
        dry_run = "dryRun" in query
        namespace, name, sub = target.namespace, target.name, target.subresource
        if content_type == "application/apply-patch+yaml":
            return self._serve_apply(kind, namespace, name, sub, parse_body(raw, content_type), query)
        patch = parse_body(raw)
        expected: Any = None
        mutate: Mutation
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise bad_request("a JSON patch must be a JSON array")
            operations = patch

            def mutate(obj: JsonDict) -> Any:
                return json_patch(obj, operations)

        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            expected = json_object(patch.get("metadata")).get("resourceVersion")
            merge = merge_patch if content_type == "application/merge-patch+json" else strategic_merge
            changes = patch

            def mutate(obj: JsonDict) -> Any:
                return merge(obj, changes)

        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {content_type}",
            )
        return Reply(
            200, self._store.update(kind, namespace, name, sub, mutate, expected_rv=expected, dry_run=dry_run)
        )

    def _serve_apply(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        sub: str | None,
        applied: Any,
        query: Mapping[str, str],
    ) -> Reply:
        """Server-side apply, approximated for one field manager (see the module docstring)."""
        manager = query.get("fieldManager")
        if not manager:
            raise bad_request(
                "PatchOptions.meta.k8s.io is invalid:"
                " fieldManager: Required value: is required for apply patch"
            )
        applied = _named_object(applied, name, "an apply patch must be an object")
        dry_run = "dryRun" in query
        if self._store.get(kind, namespace, name) is None:
            if sub is not None:
                raise kind.not_found(name)
            body = json_copy(applied)
            body.setdefault("metadata", {})["name"] = name
            created = self._store.create(kind, namespace, body, dry_run=dry_run)
            if not dry_run:
                self._store.remember_applied(
                    kind, namespace, name, manager, sub, without_system_metadata(applied)
                )
            return Reply(201, created)
        previous = self._store.applied(kind, namespace, name, manager, sub)
        config = without_system_metadata(applied)

        def mutate(obj: JsonDict) -> Any:
            return merge_patch(merge_patch(obj, removals(previous, config)), config)

        expected = json_object(applied.get("metadata")).get("resourceVersion")
        updated = self._store.update(
            kind, namespace, name, sub, mutate, expected_rv=expected, dry_run=dry_run
        )
        if not dry_run:
            self._store.remember_applied(kind, namespace, name, manager, sub, config)
        return Reply(200, updated)

    def _serve_log(self, kind: Kind, namespace: str | None, name: str) -> Reply:
        pod = self._store.get(kind, namespace, name)
        if pod is None:
            raise kind.not_found(name)
        for status in json_array(json_object(pod.get("status")).get("containerStatuses")):
            waiting = json_object(json_object(json_object(status).get("state")).get("waiting"))
            if waiting:
                container = json_object(status).get("name")
                raise bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: {waiting.get("reason")}'
                )
        return Reply(200, "")

    async def serve_watch(self, request: web.BaseRequest, kind: Kind, target: Target) -> web.StreamResponse:
        query = request.query
        flt = Filter.from_query(kind, target.namespace, query)
        if target.name is not None:
            flt = dataclasses.replace(flt, fields=(*flt.fields, ("metadata.name", True, target.name)))
        timeout: float | None = None
        if query.get("timeoutSeconds"):
            try:
                timeout = float(query["timeoutSeconds"])
            except ValueError:
                raise bad_request("timeoutSeconds must be a number") from None
        send_initial = truthy(query.get("sendInitialEvents"))
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
            if send_initial and truthy(query.get("allowWatchBookmarks")):
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
