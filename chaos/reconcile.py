"""After the crash run: what was promised (every 202) against what happened (the orchestrator, the cluster).

Definitions, precisely:

- accepted: a webhook answered 202 (retries of it, with its Idempotency-Key,
  are the same webhook and must answer the same deployment id).
- lost: an accepted deployment id the orchestrator does not know, or whose
  final status is not `succeeded` or `superseded`.
- newest accepted image of a component: the image of the accepted deployment
  the gateway accepted last (its `timings.accepted`; the orchestrator's
  record order breaks ties). The data plane's Deployment object must carry that
  deployment's id and run that image pinned by digest.
- applied: the agent wrote the component's main object, the Kubernetes
  `Deployment`, with the deployment's `landfall.dev/deployment-id` annotation,
  and the API server accepted it (a 2xx answer in the sandbox's request log;
  the agent writes a Deployment last, after its Namespace, Secret and Service,
  so the write of the Deployment is what makes a rollout start). Writes the API
  server refused (a 409 on a patch race) change nothing and are not counted.
- duplicated: a deployment id applied more than once. A redelivered command
  finds its own id on the live object and writes nothing; a crash between the
  Service and the Deployment write makes the redelivery write the Service again
  (harmless and not counted), never the Deployment twice. A deployment that
  was superseded before it was dispatched is never applied (0 writes is right).
- extra: a deployment of a chaos component that no 202 named: one webhook
  became two deployments, or the orchestrator invented one.

Config changes (chaos/config_changes.py), the same words for a `PUT …/config`:

- explained: a deployment with `source: "config"` whose `config_version` a PUT
  answered (with that `deployment_id`), or, for a PUT whose answer never came,
  a version no answer named. Any other config deployment is extra.
- lost: a PUT answered with a `deployment_id` that does not end `succeeded` or
  `superseded` (or that the orchestrator does not know). And any deployment
  superseded by a config one that rolled out another image: a config rollout
  takes the image of what it supersedes, so a different one brought an older
  image back over it (for a webhook, that webhook is in `lost`).
- doubled: two config deployments of one component for one config version
  (one change rolled out twice); a config deployment applied twice is in
  `duplicated` like any other.
- a config rollout accepted after a webhook may be superseded by it (the webhook
  was accepted first and recorded after it): a superseded config deployment is
  never what must run.
- the newest deployment of a component may be a config one: then its image
  (the one it rolled out again) is what must run, and in any case the live
  objects carry the last config the driver set: the Deployment's replicas and
  plain env, the pod template's config version, and the Secret `<c>-env` with
  exactly the secret names in force and their last values.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chaos.config_changes import Change
from chaos.load import Webhook
from chaos.provision import Target
from libs.contracts.naming import ANNOTATION_DEPLOYMENT_ID

# The pod template's annotation naming the config version it runs (the agent's `domain.workload`).
ANNOTATION_CONFIG_VERSION = "landfall.dev/config-version"

TERMINAL = ("succeeded", "failed", "superseded")
GOOD = ("succeeded", "superseded")
# The orchestrator's words for what superseded a deployment (its `detail`).
SUPERSEDED_BY = re.compile(r"superseded by (dep_[0-9a-z_]+)")


@dataclass
class Reconciliation:
    accepted: int = 0
    succeeded: int = 0
    superseded: int = 0
    lost: list[dict[str, Any]] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    extra: list[dict[str, Any]] = field(default_factory=list)
    merged: list[dict[str, Any]] = field(default_factory=list)
    wrong_image: list[dict[str, Any]] = field(default_factory=list)
    succeeded_without_write: list[str] = field(default_factory=list)
    gave_up: list[dict[str, Any]] = field(default_factory=list)
    config_changes: int = 0
    config_lost: list[dict[str, Any]] = field(default_factory=list)
    config_doubled: list[dict[str, Any]] = field(default_factory=list)
    wrong_config: list[dict[str, Any]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    deployment_writes: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.extra
            or self.merged
            or self.wrong_image
            or self.succeeded_without_write
            or self.gave_up
            or self.config_lost
            or self.config_doubled
            or self.wrong_config
        )

    @property
    def figures(self) -> dict[str, int]:
        """The delivery counts every run reports (the cases themselves are in `samples`)."""
        return {
            "accepted": self.accepted,
            "succeeded": self.succeeded,
            "superseded": self.superseded,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "extra_deployments": len(self.extra),
            "wrong_image_running": len(self.wrong_image),
            "gave_up": len(self.gave_up),
        }

    def samples(self, most: int = 20) -> dict[str, Any]:
        """The first `most` cases of each delivery failure, for latest.json."""
        return {
            "lost": self.lost[:most],
            "duplicated": dict(list(self.duplicated.items())[:most]),
            "extra": self.extra[:most],
            "wrong_image": self.wrong_image[:most],
            "gave_up": self.gave_up[:most],
        }


def deployment_writes(writes: list[dict[str, Any]]) -> Counter[str]:
    """Accepted writes of a Deployment object (not its status), per deployment-id annotation."""
    counted: Counter[str] = Counter()
    for w in writes:
        if (
            w["resource"] == "deployments"
            and w["group"] == "apps"
            and w["subresource"] is None
            and w["method"] in ("POST", "PUT", "PATCH")
            and 200 <= w["status"] < 300
            and w["deployment_id"]
        ):
            counted[w["deployment_id"]] += 1
    return counted


def judge(
    *,
    targets: list[Target],
    hooks: list[Webhook],
    histories: dict[str, list[dict[str, Any]]],
    writes: list[dict[str, Any]],
    live: dict[str, tuple[int, dict[str, Any] | None]],
    changes: Sequence[Change] = (),
    env_secrets: dict[str, tuple[int, dict[str, Any] | None]] | None = None,
) -> Reconciliation:
    """The verdict from what was collected, without I/O (so that it can be tested on made-up runs).

    `live` is the data plane's answer for each target's Deployment object: (HTTP status, body).
    Subtle: a target whose every webhook was refused (or whose deployments the orchestrator
    lost) is still checked: with no 202 its object must not exist; with 202s whose records
    are missing, the newest 202 (by the order CI sent them) is what must run.
    """
    result = Reconciliation()
    by_id: dict[str, dict[str, Any]] = {}
    order: dict[str, tuple[datetime, int]] = {}
    for items in histories.values():
        for position, d in enumerate(items):
            by_id[d["id"]] = d
            # accepted later is newer; then recorded later (the history lists newest first)
            accepted = d.get("timings", {}).get("accepted")
            when = datetime.fromisoformat(accepted) if accepted else datetime.min.replace(tzinfo=UTC)
            order[d["id"]] = (when, -position)
    promised: dict[str, Webhook] = {}
    for hook in hooks:
        if hook.deployment_id is None:
            result.gave_up.append({"webhook": hook.index, "component": hook.target.name, "why": hook.gave_up})
            continue
        if hook.deployment_id in promised:
            result.merged.append(
                {
                    "deployment_id": hook.deployment_id,
                    "webhooks": [promised[hook.deployment_id].index, hook.index],
                }
            )
            continue
        promised[hook.deployment_id] = hook
    result.accepted = len(promised)
    explained = _judge_config(result, changes, histories, by_id)
    overridden = _overridden_by_config(by_id)
    for dep_id, by in overridden.items():
        if dep_id not in promised:
            d = by_id[dep_id]
            result.config_lost.append(
                {"deployment_id": dep_id, "component": d.get("component"), "status": "superseded", "by": by}
            )

    per_id = deployment_writes(writes)
    result.deployment_writes = sum(per_id.values())
    result.duplicated = {dep: n for dep, n in per_id.items() if n > 1}

    for dep_id, hook in promised.items():
        found = by_id.get(dep_id)
        status = found["status"] if found else "unknown"
        result.statuses[status] += 1
        if found is None or status not in GOOD or dep_id in overridden:
            result.lost.append(
                {
                    "deployment_id": dep_id,
                    "component": hook.target.name,
                    "status": status,
                    "reason": (found or {}).get("reason"),
                    **({"by": overridden[dep_id]} if dep_id in overridden else {}),
                }
            )
        elif status == "succeeded":
            result.succeeded += 1
            if per_id.get(dep_id, 0) == 0:
                result.succeeded_without_write.append(dep_id)
        else:
            result.superseded += 1
    # Any deployment of a chaos component that no 202 named is extra, whatever its source: a
    # promotion, a CLI deploy or a message the orchestrator made up would all run unasked.
    for dep_id, d in by_id.items():
        if dep_id not in promised and dep_id not in explained:
            result.extra.append(
                {
                    "deployment_id": dep_id,
                    "component": d.get("component"),
                    "status": d.get("status"),
                    "source": d.get("source"),
                }
            )
    # A write no record explains (an id neither promised nor in any history) is extra too.
    for dep_id in per_id:
        if dep_id not in promised and dep_id not in by_id and dep_id not in explained:
            result.extra.append({"deployment_id": dep_id, "component": None, "status": "written, unrecorded"})

    by_target: dict[str, list[str]] = {}
    for dep_id, hook in promised.items():
        by_target.setdefault(hook.target.name, []).append(dep_id)
    wanted = {dep_id: promised[dep_id].tag for dep_id in promised}
    for dep_id in explained:
        by_target.setdefault(by_id[dep_id]["component"], []).append(dep_id)
        wanted[dep_id] = _tag_of(by_id[dep_id]["image"])
    sent_at = {dep_id: (hook.sent_at, hook.index) for dep_id, hook in promised.items()}
    replaced = {dep_id for dep_id in explained if by_id[dep_id]["status"] == "superseded"}
    for target in targets:
        _check_live(
            result,
            target,
            by_target.get(target.name, []),
            wanted,
            sent_at,
            order,
            live.get(target.name),
            replaced,
        )
    for change in changes:
        if change.answered:
            _check_config(
                result,
                change,
                histories,
                live.get(change.component),
                (env_secrets or {}).get(change.component),
            )
    for dep_id in explained:
        if by_id[dep_id]["status"] == "succeeded" and per_id.get(dep_id, 0) == 0:
            result.succeeded_without_write.append(dep_id)
    return result


def _overridden_by_config(by_id: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Deployments superseded by a config deployment that rolled out another image: {id: by}."""
    out: dict[str, str] = {}
    for dep_id, d in by_id.items():
        match = SUPERSEDED_BY.match(d.get("detail") or "") if d.get("status") == "superseded" else None
        by = by_id.get(match.group(1)) if match else None
        if by is not None and by.get("source") == "config" and by.get("image") != d.get("image"):
            out[dep_id] = by["id"]
    return out


def _tag_of(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    return name.split("@", 1)[0].rsplit(":", 1)[-1] if ":" in name else ""


def _judge_config(
    result: Reconciliation,
    changes: Sequence[Change],
    histories: dict[str, list[dict[str, Any]]],
    by_id: dict[str, dict[str, Any]],
) -> set[str]:
    """The config deployments the driver's PUTs explain; lost and doubled ones go to `result`."""
    explained: set[str] = set()
    for change in changes:
        answered = {a["version"]: a["deployment_id"] for a in change.answered}
        result.config_changes += len(change.answered)
        per_version: dict[int, list[str]] = {}
        for d in histories.get(change.component, []):
            if d.get("source") == "config" and d.get("config_version") is not None:
                per_version.setdefault(d["config_version"], []).append(d["id"])
        spare = change.unanswered  # versions an unanswered PUT may have stored and rolled out
        for version, ids in sorted(per_version.items()):
            if len(ids) > 1:
                result.config_doubled.append(
                    {"component": change.component, "version": version, "deployments": ids}
                )
            if answered.get(version) in ids:
                explained.add(answered[version])  # any other of `ids` stays extra
            elif version not in answered and spare > 0:
                spare -= 1
                explained.add(ids[-1])  # the history lists newest first: the first one recorded
        for version, dep_id in answered.items():
            if dep_id is None:
                continue
            found = by_id.get(dep_id)
            status = found["status"] if found else "unknown"
            if found is None or status not in GOOD:
                result.config_lost.append(
                    {
                        "deployment_id": dep_id,
                        "component": change.component,
                        "version": version,
                        "status": status,
                        "reason": (found or {}).get("reason"),
                    }
                )
    return explained


def _check_config(
    result: Reconciliation,
    change: Change,
    histories: dict[str, list[dict[str, Any]]],
    live: tuple[int, dict[str, Any] | None] | None,
    secret: tuple[int, dict[str, Any] | None] | None,
) -> None:
    """The live objects carry the last config the driver set (and its latest version)."""
    versions = [a["version"] for a in change.answered]
    versions += [
        d["config_version"]
        for d in histories.get(change.component, [])
        if d.get("source") == "config" and d.get("config_version") is not None
    ]
    want = change.expected
    _, obj = live if live is not None else (0, None)
    spec = (obj or {}).get("spec") or {}
    template = spec.get("template") or {}
    container = ((template.get("spec") or {}).get("containers") or [{}])[0]
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    wrong: dict[str, Any] = {}
    if spec.get("replicas") != want["replicas"]:
        wrong["replicas"] = spec.get("replicas")
    if any(env.get(k) != v for k, v in want["env"].items()):
        wrong["env"] = {k: env.get(k) for k in want["env"]}
    running = ((template.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_CONFIG_VERSION)
    if running != str(max(versions)):
        wrong["config_version"] = running
    status, body = secret if secret is not None else (0, None)
    data = (body or {}).get("data") or {} if status == 200 else {}
    values = {k: base64.b64decode(v).decode() for k, v in data.items() if v is not None}
    if values != want["secrets"]:
        # names only: a value never goes into a report
        wrong["secret_names"] = sorted(values)
        if sorted(values) == sorted(want["secrets"]):
            wrong["secret_values"] = "differ"
    if want["secrets"] and {"secretRef": {"name": f"{change.component}-env"}} not in (
        container.get("envFrom") or []
    ):
        wrong["envFrom"] = container.get("envFrom")
    if wrong:
        result.wrong_config.append(
            {
                "component": change.component,
                "expected": {
                    "replicas": want["replicas"],
                    "env": want["env"],
                    "secret_names": sorted(want["secrets"]),
                    "config_version": max(versions),
                },
                "found": wrong,
            }
        )


def _check_live(
    result: Reconciliation,
    target: Target,
    mine: list[str],
    wanted: dict[str, str],
    sent_at: dict[str, tuple[float, int]],
    order: dict[str, tuple[datetime, int]],
    answer: tuple[int, dict[str, Any] | None] | None,
    replaced: set[str],
) -> None:
    status, obj = answer if answer is not None else (0, None)
    if not mine:
        if status != 404:
            result.wrong_image.append(
                {"component": target.name, "expected": None, "found": f"HTTP {status} (no 202 named it)"}
            )
        return
    floor = (datetime.min.replace(tzinfo=UTC), 0)
    # Newest by the orchestrator's order; a 202 it never recorded ranks by when CI sent it. A
    # superseded config rollout was replaced by a webhook accepted before it: never the newest.
    candidates = [d for d in mine if d not in replaced] or mine
    newest = max(candidates, key=lambda d: (order.get(d, floor), sent_at.get(d, (0.0, 0))))
    tag = wanted[newest]
    want_image = target.pinned(tag) if tag in target.digests else f"unknown tag {tag!r}"
    if status != 200 or obj is None:
        result.wrong_image.append({"component": target.name, "expected": newest, "found": f"HTTP {status}"})
        return
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    image = containers[0].get("image")
    running = annotations.get(ANNOTATION_DEPLOYMENT_ID)
    if running != newest or image != want_image:
        result.wrong_image.append(
            {
                "component": target.name,
                "expected": newest,
                "expected_image": want_image,
                "running": running,
                "image": image,
            }
        )
