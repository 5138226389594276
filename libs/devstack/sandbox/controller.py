"""The simulated deployment and job controllers plus kubelet, reduced to status updates.

Deployments and Jobs move to their final status by `kubectl rollout status` rules, or
fail when a `FailureRule` matches a container image (ImagePullBackOff, CrashLoopBackOff,
...): their pods are created waiting with that reason, and a Deployment reports
ProgressDeadlineExceeded once its deadline passes.

A Deployment that succeeds gets running pods (up to ten) whose `containerStatuses[].imageID` is
what a kubelet reports, `<host>/<repository>@sha256:…`: the digest the image names, or for a tag
on a loopback registry (the test stack's docker-registry) the digest that registry answers for it
now; other tags get no digest (the sandbox pulls nothing). They are written before the
Deployment's status, so whoever sees it succeeded finds them.

Subtle: the controller writes through the same store functions the HTTP handlers use, so
watchers see its MODIFIED events; it reacts to the store's events (not polling) and
resyncs twice a second for progress deadlines and healed failure rules. Its task is named
`kmock-sandbox-controller` so the test suite's task-leak check treats it like kmock's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Final

from libs.devstack.sandbox.errors import ApiError
from libs.devstack.sandbox.images import image_id
from libs.devstack.sandbox.kinds import Kind
from libs.devstack.sandbox.store import Event, Store
from libs.devstack.sandbox.values import (
    JsonDict,
    json_array,
    json_copy,
    json_object,
    random_suffix,
    short_hash,
    timestamp,
)

log = logging.getLogger(__name__)

_RESYNC_SECONDS: Final = 0.5
_MAX_SIMULATED_PODS: Final = 10


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
    now = timestamp()
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


def _pod(owner: JsonDict, template: JsonDict, name: str, labels: JsonDict) -> JsonDict:
    """A pod of `owner` made from its pod `template` (copied: the pod may change, the template not)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": labels,
            "annotations": json_copy(json_object(json_object(template.get("metadata")).get("annotations"))),
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": json_copy(json_object(template.get("spec"))),
    }


class Controller:
    """What the deployment and job controllers plus a kubelet would do, reduced to status updates."""

    def __init__(self, store: Store, rules: list[FailureRule]) -> None:
        self._store = store
        self._rules = rules
        self._deployments = store.kind_for("apps/v1", "deployments")
        self._jobs = store.kind_for("batch/v1", "jobs")
        self._pods = store.kind_for("v1", "pods")
        self._dirty: set[tuple[Kind, str, str]] = set()
        self._failing: dict[tuple[str, str], _Failing] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.paused = False
        # Wake-ups a pause made the controller skip: what a test waits on to know the pause held.
        self.skipped = 0

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

    def _on_event(self, event: Event) -> None:
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
                self.skipped += 1
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
        spec = json_object(template.get("spec"))
        containers = [
            c
            for c in json_array(spec.get("initContainers")) + json_array(spec.get("containers"))
            if isinstance(c, dict)
        ]
        for rule in self._rules:
            for container in containers:
                if rule.image_contains in str(container.get("image", "")):
                    return rule, container
        return None

    def _write_status(self, kind: Kind, namespace: str, name: str, status: JsonDict) -> None:
        def replace_status(obj: JsonDict) -> JsonDict:
            return {**obj, "status": status}

        self._store.update(kind, namespace, name, "status", replace_status)

    def _delete_owned_pods(self, namespace: str, owner_uid: str) -> None:
        for name in self._store.owned(self._pods, namespace, owner_uid):
            with contextlib.suppress(ApiError):
                self._store.delete(self._pods, namespace, name)

    def _create_failing_pod(
        self, owner: JsonDict, name: str, labels: JsonDict, rule: FailureRule, bad: JsonDict
    ) -> None:
        namespace = owner["metadata"]["namespace"]
        template = json_object(json_object(owner.get("spec")).get("template"))
        pod = _pod(owner, template, name, labels)
        pod_spec = json_object(pod["spec"])
        self._store.create(self._pods, namespace, pod)
        crashing = rule.reason == "CrashLoopBackOff"
        containers = [c for c in json_array(pod_spec.get("containers")) if isinstance(c, dict)]
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
                        "terminated": {"exitCode": 1, "reason": "Error", "finishedAt": timestamp()}
                    }
            else:
                status.update(ready=True, started=True, state={"running": {"startedAt": timestamp()}})
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
            "startTime": timestamp(),
            "containerStatuses": statuses,
        }
        self._write_status(self._pods, namespace, name, pod_status)

    # Deployments.

    def _reconcile_deployment(self, namespace: str, name: str) -> None:
        obj = self._store.get(self._deployments, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        generation = int(obj["metadata"].get("generation") or 1)
        observed = json_object(obj.get("status")).get("observedGeneration")
        template = json_object(json_object(obj.get("spec")).get("template"))
        matched = self._match(template)
        failing = self._failing.get((namespace, name))
        if isinstance(observed, int) and observed >= generation:
            if failing is not None and matched is None:
                self._deployment_succeeded(obj)  # the image became pullable: the kubelet's retry succeeds
            return
        replicas = int(json_object(obj.get("spec")).get("replicas", 1) or 0)
        if matched is not None and replicas > 0:
            self._deployment_failed(obj, replicas, *matched)
        else:
            self._deployment_succeeded(obj)

    def _replica_set_name(self, obj: JsonDict) -> str:
        template = json_object(json_object(obj.get("spec")).get("template"))
        return f"{obj['metadata']['name']}-{short_hash(template)}"

    def _deployment_succeeded(self, obj: JsonDict) -> None:
        meta = obj["metadata"]
        replicas = int(json_object(obj.get("spec")).get("replicas", 1) or 0)
        self._failing.pop((meta["namespace"], meta["name"]), None)
        self._delete_owned_pods(meta["namespace"], meta["uid"])
        rs_name = self._replica_set_name(obj)
        self._create_running_pods(obj, rs_name, min(replicas, _MAX_SIMULATED_PODS))
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

    def _create_running_pods(self, owner: JsonDict, rs_name: str, count: int) -> None:
        namespace = owner["metadata"]["namespace"]
        template = json_object(json_object(owner.get("spec")).get("template"))
        labels = {
            **json_object(json_object(template.get("metadata")).get("labels")),
            "pod-template-hash": rs_name.rsplit("-", 1)[1],
        }
        containers = [
            c for c in json_array(json_object(template.get("spec")).get("containers")) if isinstance(c, dict)
        ]
        image_ids = {str(c.get("image", "")): image_id(str(c.get("image", ""))) for c in containers}
        for _ in range(count):
            name = f"{rs_name}-{random_suffix()}"
            pod = _pod(owner, template, name, labels)
            self._store.create(self._pods, namespace, pod)
            statuses = [
                {
                    "name": str(c.get("name", "")),
                    "image": str(c.get("image", "")),
                    "imageID": image_ids[str(c.get("image", ""))],
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": timestamp()}},
                }
                for c in containers
            ]
            status = {
                "phase": "Running",
                "conditions": [
                    _condition(kind, "True", "", "")
                    for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
                "hostIP": "10.0.0.1",
                "podIP": "10.42.0.11",
                "startTime": timestamp(),
                "containerStatuses": statuses,
            }
            self._write_status(self._pods, namespace, name, status)

    def _deployment_failed(self, obj: JsonDict, replicas: int, rule: FailureRule, bad: JsonDict) -> None:
        meta = obj["metadata"]
        namespace, generation = meta["namespace"], int(meta.get("generation") or 1)
        self._delete_owned_pods(namespace, meta["uid"])
        rs_name = self._replica_set_name(obj)
        template = json_object(json_object(obj.get("spec")).get("template"))
        labels = {
            **json_object(json_object(template.get("metadata")).get("labels")),
            "pod-template-hash": rs_name.rsplit("-", 1)[1],
        }
        for _ in range(min(replicas, _MAX_SIMULATED_PODS)):
            self._create_failing_pod(obj, f"{rs_name}-{random_suffix()}", labels, rule, bad)
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
            if self._match(json_object(json_object(obj.get("spec")).get("template"))) is None:
                self._dirty.add((self._deployments, namespace, name))
                self._wake.set()
                continue
            deadline = float(json_object(obj.get("spec")).get("progressDeadlineSeconds", 600))
            if failing.deadline_reported or time.monotonic() - failing.since < deadline:
                continue
            failing.deadline_reported = True
            status = json_copy(json_object(obj.get("status")))
            rs_name = self._replica_set_name(obj)
            status["conditions"] = [
                c
                for c in json_array(status.get("conditions"))
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
        spec, status = json_object(obj.get("spec")), json_object(obj.get("status"))
        finished = any(
            isinstance(c, dict) and c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in json_array(status.get("conditions"))
        )
        if finished or spec.get("suspend"):
            return
        started = status.get("startTime") or timestamp()
        if not status.get("startTime"):
            self._write_status(self._jobs, namespace, name, {"startTime": started, "active": 1, "ready": 0})
        template = json_object(spec.get("template"))
        matched = self._match(template)
        if matched is not None:
            rule, bad = matched
            labels = {
                **json_object(json_object(template.get("metadata")).get("labels")),
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
                "batch.kubernetes.io/controller-uid": obj["metadata"]["uid"],
                "controller-uid": obj["metadata"]["uid"],
            }
            self._create_failing_pod(obj, f"{name}-{random_suffix()}", labels, rule, bad)
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
                "completionTime": timestamp(),
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
