"""Pure functions: what a Deployment, a Job and their Pods say about a rollout.

`deployment_verdict` is kubectl's `DeploymentStatusViewer.Status`
(k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go), in the same order:
1. the controller has not seen the latest spec (generation > observedGeneration): progressing;
2. condition Progressing has reason ProgressDeadlineExceeded: failed;
3. updatedReplicas < spec.replicas: progressing (new replicas being created);
4. status.replicas > updatedReplicas: progressing (old replicas pending termination);
5. availableReplicas < updatedReplicas: progressing (new replicas not available yet);
6. otherwise: succeeded.
A rollout whose Pods cannot start (bad image, crash loop) only hits the progress
deadline after 10 minutes, so `pod_failure` reads the Pods' container states to
fail fast with the reason a user would see in `kubectl get pods`.

`Rollout` is what the agent watches: a Deployment (kind=deploy) or a Job
(kind=run), built from the command just applied or, after a restart, from the
object itself (its annotations say which deployment and run it belongs to).
Before judging an object, `replaced` checks that it is still ours: a Job that
another run now holds, or a Deployment that a newer deployment rewrote, ends
the watch without waiting for the rollout.

A rollout of an image named by tag (vendor registries, or a tag the control plane
could not resolve) reports the digest the cluster pulled: `pulled_digest` reads it
from the Pods' `containerStatuses[].imageID`, which runtimes spell
`docker-pullable://host/repo@sha256:…`, `host/repo@sha256:…` or just an image id
(`sha256:…` of the config, not of the manifest: no digest of the image as pushed,
so none is reported).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.contracts import naming, reasons
from libs.contracts.messages import CommandKind, DeployCommand, ReportStatus
from libs.oci.reference import InvalidReference, validate_digest

from . import manifests
from .manifests import Kind

# Waiting reasons that do not fix themselves: report them instead of waiting 10 minutes.
FAILING_WAITING_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "InvalidImageName", "CreateContainerConfigError"}
)
TIMED_OUT_REASON = "ProgressDeadlineExceeded"

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    """What a report says of a command: what watching its rollout found, or what applying decided."""

    status: ReportStatus
    reason: str | None = None
    message: str | None = None
    digest: str | None = None  # the image digest the cluster pulled, for a rollout by tag

    @property
    def terminal(self) -> bool:
        return self.status != "progressing"


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _condition(status: Obj, kind: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def deployment_verdict(deployment: Obj) -> Verdict:
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "")
    if _int(meta.get("generation")) > _int(status.get("observedGeneration")):
        return Verdict("progressing", message="waiting for the deployment spec update to be observed")
    cond = _condition(status, "Progressing")
    if cond is not None and cond.get("reason") == TIMED_OUT_REASON:
        return Verdict(
            "failed",
            reason=reasons.PROGRESS_DEADLINE_EXCEEDED,
            message=cond.get("message") or f'deployment "{name}" exceeded its progress deadline',
        )
    replicas = _int(spec.get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    if updated < replicas:
        return Verdict("progressing", message=f"{updated} out of {replicas} new replicas have been updated")
    total = _int(status.get("replicas"))
    if total > updated:
        return Verdict("progressing", message=f"{total - updated} old replicas are pending termination")
    available = _int(status.get("availableReplicas"))
    if available < updated:
        return Verdict("progressing", message=f"{available} of {updated} updated replicas are available")
    return Verdict("succeeded", message=f'deployment "{name}" successfully rolled out')


def _container_statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def pod_failure(pods: Iterable[Obj], *, reasons: frozenset[str] = FAILING_WAITING_REASONS) -> Verdict | None:
    """The first container stuck in a waiting state that will not resolve itself, as a failure."""
    for pod in pods:
        for cs in _container_statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in reasons:
                detail = waiting.get("message") or reason
                return Verdict("failed", reason=reason, message=f"container {cs.get('name', '?')}: {detail}")
    return None


def pod_termination(pods: Iterable[Obj]) -> Verdict | None:
    """Why a finished Pod's container stopped with an error (for a failed Job)."""
    for pod in pods:
        for cs in _container_statuses(pod):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and _int(term.get("exitCode")) != 0:
                reason = term.get("reason") or "Error"
                detail = term.get("message") or f"exit code {term.get('exitCode')}"
                return Verdict("failed", reason=reason, message=f"container {cs.get('name', '?')}: {detail}")
    return None


def job_verdict(job: Obj, pods: Iterable[Obj]) -> Verdict:
    """Complete -> succeeded; Failed -> failed with the Pod's reason when there is one."""
    status = job.get("status") or {}
    pods = list(pods)
    for kind in ("Complete", "SuccessCriteriaMet"):
        cond = _condition(status, kind)
        if cond is not None and cond.get("status") == "True":
            return Verdict("succeeded", message="the job completed")
    for kind in ("Failed", "FailureTarget"):
        cond = _condition(status, kind)
        if cond is not None and cond.get("status") == "True":
            from_pod = pod_failure(pods) or pod_termination(pods)
            if from_pod is not None:
                return from_pod
            return Verdict("failed", reason=cond.get("reason") or "Failed", message=cond.get("message"))
    stuck = pod_failure(pods)
    if stuck is not None:
        return stuck
    return Verdict("progressing", message="the job is running")


def pulled_digest(pods: Iterable[Obj], container: str) -> str | None:
    """The manifest digest `container` runs in these Pods (all of them agree, or None)."""
    found: set[str] = set()
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            image_id = str(cs.get("imageID") or "")
            _, at, digest = image_id.rpartition("@")
            if not at:
                continue
            try:
                found.add(validate_digest(digest))
            except InvalidReference:
                continue
    return found.pop() if len(found) == 1 else None


JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def pods_of(
    pods: Iterable[Obj],
    *,
    deployment_id: str | None = None,
    execution_id: str | None = None,
    job_name: str | None = None,
) -> list[Obj]:
    """Pods of this deployment (or run); Pods that carry no Landfall annotation at all are kept."""
    keep = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        notes = meta.get("annotations") or {}
        pod_labels = meta.get("labels") or {}
        if job_name is not None and any(pod_labels.get(k, job_name) != job_name for k in JOB_NAME_LABELS):
            continue
        wanted: str | None
        if execution_id is not None:
            given, wanted = notes.get(naming.ANNOTATION_EXECUTION_ID), execution_id
        else:
            given, wanted = notes.get(naming.ANNOTATION_DEPLOYMENT_ID), deployment_id
        if given is None or given == wanted:
            keep.append(pod)
    return keep


# The labels a rollout's Pods carry (and are listed by): the component's, without managed-by.
POD_LABELS = (naming.LABEL_ORG, naming.LABEL_PROJECT, naming.LABEL_COMPONENT, naming.LABEL_ENVIRONMENT)


@dataclass(frozen=True)
class Rollout:
    """A Deployment rollout (kind=deploy) or a Job (kind=run) to watch to a terminal status."""

    kind: CommandKind
    deployment_id: str
    execution_id: str | None
    seq: int | None
    namespace: str
    object_kind: Kind
    object_name: str
    pod_labels: dict[str, str]
    applied_at: datetime | None = None
    by_tag: bool = False  # the image has no digest: report the one the cluster pulled

    @property
    def key(self) -> tuple[str, str, str]:
        """One watch per key: a newer deploy of the same object replaces the older watch."""
        if self.kind == "run":
            return ("run", self.namespace, self.execution_id or self.object_name)
        return ("deploy", self.namespace, self.object_name)

    @property
    def component(self) -> str | None:
        return self.pod_labels.get(naming.LABEL_COMPONENT)

    def same_as(self, other: Rollout) -> bool:
        return self.deployment_id == other.deployment_id and self.execution_id == other.execution_id

    @classmethod
    def from_command(cls, cmd: DeployCommand, applied_at: datetime | None) -> Rollout:
        kind, name = manifests.primary(cmd)
        return cls(
            kind=cmd.kind,
            deployment_id=cmd.deployment_id,
            execution_id=cmd.execution_id,
            seq=cmd.seq,
            namespace=cmd.namespace,
            object_kind=kind,
            object_name=name,
            pod_labels=manifests.selector(cmd),
            applied_at=applied_at,
            by_tag="@" not in cmd.image,
        )

    @classmethod
    def from_object(cls, kind: Kind, obj: Obj) -> Rollout | None:
        """The rollout an object the agent wrote stands for (at start); None if it is not one."""
        meta = obj.get("metadata") or {}
        mark = manifests.marker(obj)
        labels = meta.get("labels") or {}
        if not mark.deployment_id or not meta.get("name") or not meta.get("namespace"):
            return None
        return cls(
            kind="run" if kind == "Job" else "deploy",
            deployment_id=mark.deployment_id,
            execution_id=mark.execution_id,
            seq=mark.seq,
            namespace=meta["namespace"],
            object_kind=kind,
            object_name=meta["name"],
            pod_labels={k: labels[k] for k in POD_LABELS if k in labels},
            by_tag=kind == "Deployment" and "@" not in _image(obj),
        )


def _image(obj: Obj) -> str:
    """The image of a Deployment's (first) container."""
    template = (obj.get("spec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("image") or "")


def replaced(target: Rollout, obj: Obj | None) -> Verdict | None:
    """The watched object is gone or belongs to another deployment (or run) now: the final word."""
    if obj is None:
        return Verdict("failed", reason=reasons.DELETED, message=f"the {target.object_kind} was deleted")
    mark = manifests.marker(obj)
    if target.kind == "run":
        if mark.execution_id not in (None, target.execution_id):
            return Verdict("failed", reason=reasons.DELETED, message="the Job was replaced by another run")
        return None
    if mark.deployment_id != target.deployment_id:
        return Verdict("superseded", message=f"deployment {mark.deployment_id} replaced it")
    return None
