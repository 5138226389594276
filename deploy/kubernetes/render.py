"""`make manifests`: renders each kustomization under deploy/kubernetes to build/manifests/<name>.yaml.

Why a renderer of our own: the project installs itself from pip wheels and Debian packages, and
neither ships a kustomize binary (nor does the machine CI runs on promise kubectl), yet `make test`
must render, validate and apply the manifests. So this module implements the part of the
Kustomization format that our kustomizations use, and refuses every other field instead of
ignoring it. Users need none of it: `kubectl apply -k deploy/kubernetes/overlays/local` (kubectl's
built-in kustomize) reads the same files. tests/unit/test_install_manifests.py renders every
kustomization with a real kustomize too (`kustomize build` or `kubectl kustomize`, where one is on
PATH) and requires the same objects.

The subset, with kustomize's meaning:
- `resources`: YAML files (every document) and directories holding a kustomization (rendered first);
- `labels`: `pairs` added to every object's metadata.labels (`includeSelectors` and
  `includeTemplates` false only: selectors never change, so an overlay cannot orphan pods);
- `images`: `name` -> `newName` / `newTag` / `digest` in every container and init container;
- `replicas`: `name` -> `count` for Deployments and StatefulSets;
- `patches`: `path` (a file) or `patch` (inline), with an optional `target` (kind, name,
  namespace): a mapping is applied as a JSON merge patch (RFC 7386), a list of `add`, `replace`
  and `remove` operations as a JSON patch (RFC 6902; kustomize tells them apart the same way).

What is subtle:
- Kustomize applies such patches as strategic merge patches, which merge lists of objects by key
  (containers by name). A JSON merge patch replaces lists instead, so a patch that holds a list of
  mappings is refused here: write those as separate objects or change them in the base.
- No `namespace:` transformer: every file names its namespace, because kustomize's rewrite of
  namespaces inside RoleBindings and ClusterRoleBindings has rules we would have to copy.
- Order: Namespaces first (so `kubectl apply -f` of one file works on an empty cluster), then
  resources in the order listed. Kustomize sorts by kind instead; the comparison ignores order.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from libs.runtime.mergepatch import merge_patch

KUSTOMIZATION = "kustomization.yaml"
ROOT = Path(__file__).resolve().parent
# Each rendered to build/manifests/<name>.yaml, in this order.
KUSTOMIZATIONS: dict[str, Path] = {
    "control-plane": ROOT / "control-plane",
    "nats": ROOT / "nats",
    "agent": ROOT / "agent",
    "local": ROOT / "overlays" / "local",
    "production": ROOT / "overlays" / "production",
}
# The agent's rendered manifest is also kept in the tree, where users and docs point.
KEPT = {"agent": ROOT / "agent.yaml"}
KEPT_HEADER = """\
# Rendered from deploy/kubernetes/agent/ by `make manifests`: edit those files, never this one.
# The data-plane agent in your cluster; why its RBAC is shaped so: deploy/kubernetes/agent/rbac.yaml.
# Set it up as INSTALL.md says ("Enroll a data plane"): the enrollment Secret and the addresses.
"""
KNOWN = {"apiVersion", "kind", "resources", "labels", "images", "replicas", "patches"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

Obj = dict[str, Any]


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render the way kustomize would."""


def render(directory: Path) -> list[Obj]:
    """Every object of the kustomization in `directory`, transformed as kustomize would."""
    path = directory / KUSTOMIZATION
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - KNOWN
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not support: {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects.extend(render(target))
        elif not target.is_relative_to(directory.resolve()):
            raise KustomizeError(f"{path}: {entry} is outside the kustomization (kustomize refuses it)")
        else:
            # Deep copies: YAML aliases would otherwise share one mapping between, say, a selector
            # and the labels a transformer changes.
            objects.extend(copy.deepcopy(doc) for doc in yaml.safe_load_all(target.read_text()) if doc)
    for patch in spec.get("patches", []):
        _patch(objects, patch, directory, path)
    for label in spec.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise KustomizeError(f"{path}: labels with includeSelectors/includeTemplates are not supported")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in spec.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                container["image"] = _retag(container["image"], image)
    for replicas in spec.get("replicas", []):
        matched = [o for o in objects if o["kind"] in WORKLOADS and o["metadata"]["name"] == replicas["name"]]
        if not matched:
            raise KustomizeError(f"{path}: replicas for {replicas['name']}, which is not a workload here")
        for obj in matched:
            obj["spec"]["replicas"] = replicas["count"]
    _unique(objects, path)
    return objects


def _patch(objects: list[Obj], patch: Obj, directory: Path, path: Path) -> None:
    body = yaml.safe_load((directory / patch["path"]).read_text()) if "path" in patch else None
    if body is None:
        body = yaml.safe_load(patch["patch"])
    if isinstance(body, list):
        if "target" not in patch:
            raise KustomizeError(f"{path}: a JSON patch needs a target")
        json_matched = [o for o in objects if _matches(o, patch["target"])]
        if not json_matched:
            raise KustomizeError(f"{path}: a patch matches no object ({patch['target']})")
        for obj in json_matched:
            for operation in body:
                json_patch(obj, operation)
        return
    _refuse_object_lists(body, path)
    target = patch.get("target") or {
        "kind": body["kind"],
        "name": body["metadata"]["name"],
        **({"namespace": body["metadata"]["namespace"]} if "namespace" in body.get("metadata", {}) else {}),
    }
    matched = [o for o in objects if _matches(o, target)]
    if not matched:
        raise KustomizeError(f"{path}: a patch matches no object ({target})")
    if "target" in patch:  # as kustomize: each matched object keeps its own name and namespace
        body = copy.deepcopy(body)
        for key in ("name", "namespace"):
            body.get("metadata", {}).pop(key, None)
    for obj in matched:
        merged = merge_patch(obj, body)
        obj.clear()
        obj.update(merged)


def _matches(obj: Obj, target: Obj) -> bool:
    meta = obj.get("metadata", {})
    return all(
        [
            target.get("kind") in (None, obj["kind"]),
            target.get("name") in (None, meta.get("name")),
            target.get("namespace") in (None, meta.get("namespace")),
        ]
    )


def json_patch(obj: Obj, operation: Obj) -> None:
    """One RFC 6902 `add`, `replace` or `remove` on `obj`, in place."""
    op = operation["op"]
    if op not in ("add", "replace", "remove"):
        raise KustomizeError(f"JSON patch operation {op!r} is not supported")
    keys = [k.replace("~1", "/").replace("~0", "~") for k in operation["path"].split("/")[1:]]
    parent: Any = obj
    for key in keys[:-1]:
        parent = parent[int(key)] if isinstance(parent, list) else parent[key]
    last = keys[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            parent[index] = copy.deepcopy(operation["value"])
        else:
            del parent[index]
    elif op == "remove" or (op == "replace" and last not in parent):
        if last not in parent:
            raise KustomizeError(f"JSON patch: {operation['path']} does not exist")
        del parent[last]
    else:
        parent[last] = copy.deepcopy(operation["value"])


def _refuse_object_lists(value: Any, path: Path) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _refuse_object_lists(item, path)
    elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
        raise KustomizeError(
            f"{path}: a patch holds a list of mappings, which kustomize would merge by key and a JSON"
            " merge patch replaces; change it in the base instead"
        )


def _containers(obj: Obj) -> Iterator[Obj]:
    spec = obj.get("spec", {})
    for pod in (spec.get("template", {}).get("spec"), spec.get("jobTemplate", {}).get("spec", {})):
        if isinstance(pod, dict):
            yield from pod.get("containers", [])
            yield from pod.get("initContainers", [])


def _retag(reference: str, image: Obj) -> str:
    name, tag, digest = split_image(reference)
    if name != image["name"]:
        return reference
    name = str(image.get("newName", name))
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    return name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = reference.partition("@")
    head, _, last = name.rpartition("/")
    tag = None
    if ":" in last:
        last, tag = last.split(":", 1)
    return (f"{head}/{last}" if head else last), tag, digest or None


def _unique(objects: Iterable[Obj], path: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            raise KustomizeError(f"{path}: {key} is defined twice (kustomize refuses duplicates)")
        seen.add(key)


def identity(obj: Obj) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): what makes an object one object in a cluster."""
    meta = obj.get("metadata", {})
    return obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]


def ordered(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] == "Namespace"] + [o for o in objects if o["kind"] != "Namespace"]


def dump(objects: list[Obj]) -> str:
    return yaml.safe_dump_all(ordered(objects), sort_keys=False, default_flow_style=False, width=200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python deploy/kubernetes/render.py", description=(__doc__ or "")[:60]
    )
    parser.add_argument("--out", type=Path, default=Path("build/manifests"))
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"of {', '.join(KUSTOMIZATIONS)}; default: all"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or KUSTOMIZATIONS:
        objects = render(KUSTOMIZATIONS[name])
        text = dump(objects)
        (args.out / f"{name}.yaml").write_text(text)
        print(f"  {args.out / f'{name}.yaml'}: {len(objects)} objects")
        if name in KEPT:
            KEPT[name].write_text(KEPT_HEADER + text)
            print(f"  {KEPT[name].relative_to(ROOT.parents[1])} (kept in the tree)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
