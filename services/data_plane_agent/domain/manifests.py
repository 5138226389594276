"""Pure functions: a `DeployCommand` in, the Kubernetes objects that realise it out.

Subtle parts:
- Objects are written with JSON merge patch carrying the FULL desired object, so
  every list we own is always present (`env: []`, `imagePullSecrets: []`, …): an
  empty list replaces whatever an earlier deploy left there. Optional scalars we
  own are `None` (JSON null deletes them in a merge patch; `Kube.create` strips
  them).
- The primary object (Deployment, CronJob or the Job-template ConfigMap) is
  written LAST and carries `landfall.dev/deployment-seq`: if it shows a seq, every
  other object of that deploy was written before it, which is what makes a
  redelivered command safe to skip.
- The pod template carries the deployment id: deploying the same image again is a
  new rollout (like `kubectl rollout restart`), and Pods can be told apart from
  those of the previous ReplicaSet.
- Every object carries `landfall.dev/dataplane` (which agent may change it,
  `domain.trust`), but pod selectors do not: a Deployment's selector is
  immutable, and one written before the label existed must still be patchable.
- What an environment's config adds (replicas or an HPA, resources, probes,
  the env Secret read through `envFrom`, the Ingress host and TLS, the
  config-version annotation) is `domain.workload`'s; a command without config
  gets the objects it always got.
- Every pod template runs restricted (Pod Security Standards): non-root,
  RuntimeDefault seccomp, no privilege escalation, all capabilities dropped,
  no service-account token; the namespaces are labelled to enforce it. No
  component setting relaxes this (yet).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from libs.contracts import naming
from libs.contracts.messages import DeployCommand, RemoveCommand
from libs.runtime import mergepatch

from . import workload

Kind = Literal[
    "Namespace",
    "Deployment",
    "Service",
    "Ingress",
    "CronJob",
    "Job",
    "ConfigMap",
    "Secret",
    "Pod",
    "RoleBinding",
    "HorizontalPodAutoscaler",
]
Body = dict[str, Any]
Guard = Callable[[Mapping[str, Any]], None]
"""Checks an object that exists before it is changed; raises to leave it alone (`domain.trust`)."""

ANNOTATION_DATAPLANE_ID = "landfall.dev/dataplane-id"
TEMPLATE_KEY = "pod-spec.json"
PROGRESS_DEADLINE_SECONDS = 600
JOB_TTL_SECONDS = 7 * 24 * 3600

_API_VERSION: dict[Kind, str] = {
    "Namespace": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "Ingress": "networking.k8s.io/v1",
    "CronJob": "batch/v1",
    "Job": "batch/v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Pod": "v1",
    "RoleBinding": "rbac.authorization.k8s.io/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}

# Pod Security Admission: every namespace the agent makes enforces (and warns and audits) `restricted`.
POD_SECURITY: Final = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "warn", "audit")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}
POD_SECURITY_CONTEXT: Final = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT: Final = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
# The ClusterRole (deploy/kubernetes/agent.yaml) that reads Secrets, bound in each namespace the agent makes.
SECRETS_ROLE: Final = "landfall-agent-secrets"


@dataclass(frozen=True)
class Obj:
    kind: Kind
    name: str
    body: Body


@dataclass(frozen=True)
class Marker:
    """What the agent wrote on an object: which deployment (and run) it belongs to."""

    deployment_id: str | None
    seq: int | None
    execution_id: str | None
    dataplane_id: str | None


def pull_secret_name(component: str) -> str:
    return f"{component}-pull"


def refers_to_pull_secret(obj: Mapping[str, Any], component: str) -> bool:
    """Does this primary object (a Deployment, CronJob or job template) pull with the component's
    Secret? Read from its pod template wherever the kind keeps it (the job template: as JSON text,
    where the name appears with escaped quotes)."""
    dumped, name = json.dumps(obj), pull_secret_name(component)
    return f'"{name}"' in dumped or f'\\"{name}\\"' in dumped


def job_template_name(component: str) -> str:
    return f"{component}-job-template"


def job_name(component: str, execution_id: str) -> str:
    """`<component>-<last 8 chars of the execution id>` (lowercase base32: a valid DNS label)."""
    return f"{component}-{execution_id[-8:].lower()}"


def tombstone_name(component: str) -> str:
    return f"{component}-removed"


LABEL_REMOVED_COMPONENT: Final = "landfall.dev/removed-component"
ANNOTATION_TEARDOWN_ID: Final = "landfall.dev/teardown-id"

# What a component can own, its primary objects (and runs) first: removing them stops the workload.
REMOVABLE: Final[tuple[Kind, ...]] = (
    "Deployment",
    "CronJob",
    "Job",
    "ConfigMap",
    "Ingress",
    "HorizontalPodAutoscaler",
    "Service",
    "Secret",
)


def tombstone(cmd: RemoveCommand, dataplane_id: str) -> Obj:
    """What stays of a deleted component: a ConfigMap whose seq refuses deploy commands older than
    the removal (one dispatched just before the delete may arrive after it). It carries no
    component label, so it is not a workload of a component re-created under the same name."""
    scope = scope_labels(cmd, dataplane_id)
    name = tombstone_name(cmd.component)
    body: Body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": cmd.namespace,
            "labels": {**scope, LABEL_REMOVED_COMPONENT: cmd.component},
            "annotations": {
                naming.ANNOTATION_SEQ: str(cmd.seq),
                ANNOTATION_DATAPLANE_ID: dataplane_id,
                ANNOTATION_TEARDOWN_ID: cmd.teardown_id,
            },
        },
        "data": {"component": cmd.component, "removed_at": cmd.sent_at.isoformat()},
    }
    return Obj("ConfigMap", name, body)


def labels(cmd: DeployCommand | RemoveCommand, dataplane_id: str) -> dict[str, str]:
    """What every object of the component carries: Landfall's, this data plane's, the component's."""
    component = naming.labels_for(
        org=cmd.org, project=cmd.project, component=cmd.component, environment=cmd.environment
    )
    return {**component, naming.LABEL_DATAPLANE: dataplane_id}


def scope_labels(cmd: DeployCommand | RemoveCommand, dataplane_id: str) -> dict[str, str]:
    """The labels of what all components of one project and environment share (no component)."""
    return {k: v for k, v in labels(cmd, dataplane_id).items() if k != naming.LABEL_COMPONENT}


def selector(cmd: DeployCommand) -> dict[str, str]:
    """The pod selector (immutable on a Deployment, so without the data plane label)."""
    return {
        k: v
        for k, v in labels(cmd, cmd.dataplane_id).items()
        if k not in (naming.MANAGED_BY, naming.LABEL_DATAPLANE)
    }


def annotations_for(cmd: DeployCommand, dataplane_id: str) -> dict[str, str]:
    notes = {
        naming.ANNOTATION_DEPLOYMENT_ID: cmd.deployment_id,
        naming.ANNOTATION_SEQ: str(cmd.seq),
        ANNOTATION_DATAPLANE_ID: dataplane_id,
    }
    if cmd.kind == "run" and cmd.execution_id:
        notes[naming.ANNOTATION_EXECUTION_ID] = cmd.execution_id
    return notes


def marker(obj: Mapping[str, Any]) -> Marker:
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    raw_seq = notes.get(naming.ANNOTATION_SEQ)
    try:
        seq = int(raw_seq) if raw_seq is not None else None
    except (TypeError, ValueError):
        seq = None
    return Marker(
        deployment_id=notes.get(naming.ANNOTATION_DEPLOYMENT_ID),
        seq=seq,
        execution_id=notes.get(naming.ANNOTATION_EXECUTION_ID),
        dataplane_id=notes.get(ANNOTATION_DATAPLANE_ID),
    )


def primary(cmd: DeployCommand) -> tuple[Kind, str]:
    """The object whose seq annotation decides whether a command is new, old or a redelivery."""
    if cmd.kind == "run":
        return "Job", job_name(cmd.component, cmd.execution_id or "")
    if cmd.component_type in ("service", "web-application"):
        return "Deployment", cmd.component
    if cmd.component_type == "scheduled-task":
        return "CronJob", cmd.component
    return "ConfigMap", job_template_name(cmd.component)


def _meta(kind: Kind, name: str, cmd: DeployCommand, dataplane_id: str) -> Body:
    return {
        "apiVersion": _API_VERSION[kind],
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": cmd.namespace,
            "labels": labels(cmd, dataplane_id),
            "annotations": annotations_for(cmd, dataplane_id),
        },
    }


def namespace(cmd: DeployCommand | RemoveCommand, dataplane_id: str) -> Body:
    """Shared by every component of one project+environment (so no component label); restricted."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": cmd.namespace, "labels": {**scope_labels(cmd, dataplane_id), **POD_SECURITY}},
    }


def secrets_binding(cmd: DeployCommand | RemoveCommand, dataplane_id: str, service_account: str) -> Body:
    """The agent's read of Secrets in this namespace only (`namespace:name` of its service account):
    its ClusterRole reads no Secret, so a pull Secret is read through this binding."""
    sa_namespace, _, sa_name = service_account.partition(":")
    return {
        "apiVersion": _API_VERSION["RoleBinding"],
        "kind": "RoleBinding",
        "metadata": {
            "name": SECRETS_ROLE,
            "namespace": cmd.namespace,
            "labels": scope_labels(cmd, dataplane_id),
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": SECRETS_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace}],
    }


def container(cmd: DeployCommand, *, with_port: bool) -> Body:
    """`with_port`: a long-running workload (its port, and the probes the config gives it)."""
    ports = (
        [{"name": "http", "containerPort": cmd.port, "protocol": "TCP"}]
        if with_port and cmd.port is not None
        else []
    )
    return {
        "name": cmd.component,
        "image": cmd.image,
        "env": [{"name": k, "value": v} for k, v in sorted(cmd.env.items())],
        "args": list(cmd.args),
        "ports": ports,
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
        **workload.container_parts(cmd, long_running=with_port),
    }


def pod_template(
    cmd: DeployCommand, dataplane_id: str, *, pull: bool, restart: str | None, with_port: bool
) -> Body:
    spec: Body = {
        "containers": [container(cmd, with_port=with_port)],
        "imagePullSecrets": [{"name": pull_secret_name(cmd.component)}] if pull else [],
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "automountServiceAccountToken": False,
    }
    if restart is not None:
        spec["restartPolicy"] = restart
    notes = {**annotations_for(cmd, dataplane_id), **workload.template_annotations(cmd)}
    return {"metadata": {"labels": labels(cmd, dataplane_id), "annotations": notes}, "spec": spec}


def pull_secret(cmd: DeployCommand, dataplane_id: str, dockerconfigjson: bytes) -> Obj:
    name = pull_secret_name(cmd.component)
    body = _meta("Secret", name, cmd, dataplane_id)
    body["type"] = "kubernetes.io/dockerconfigjson"
    body["data"] = {".dockerconfigjson": base64.b64encode(dockerconfigjson).decode()}
    return Obj("Secret", name, body)


def env_secret(
    cmd: DeployCommand, dataplane_id: str, values: Mapping[str, str], *, drop: Iterable[str] = ()
) -> Obj:
    """The config secrets as an Opaque Secret the container reads through `envFrom`; `drop`: the
    keys the Secret in the cluster has now (those no longer in `values` get a null)."""
    name = workload.env_secret_name(cmd.component)
    body = _meta("Secret", name, cmd, dataplane_id)
    body["type"] = "Opaque"
    body["data"] = workload.secret_data(values, drop=drop)
    return Obj("Secret", name, body)


def hpa(cmd: DeployCommand, dataplane_id: str) -> Obj | None:
    spec = workload.hpa_spec(cmd)
    if spec is None:
        return None
    body = _meta("HorizontalPodAutoscaler", cmd.component, cmd, dataplane_id)
    body["spec"] = spec
    return Obj("HorizontalPodAutoscaler", cmd.component, body)


def deployment(cmd: DeployCommand, dataplane_id: str, *, pull: bool) -> Obj:
    body = _meta("Deployment", cmd.component, cmd, dataplane_id)
    spec: Body = {"replicas": workload.replicas(cmd)}
    if spec["replicas"] is None:
        del spec["replicas"]  # the HPA's: left out, not nulled (`domain.workload`)
    if cmd.config is not None:  # says whether an HPA may be left to delete when autoscaling ends
        body["metadata"]["annotations"][workload.ANNOTATION_AUTOSCALED] = (
            "true" if workload.autoscaled(cmd) else None
        )
    body["spec"] = {
        **spec,
        "selector": {"matchLabels": selector(cmd)},
        "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
        "template": pod_template(cmd, dataplane_id, pull=pull, restart=None, with_port=True),
    }
    return Obj("Deployment", cmd.component, body)


def service(cmd: DeployCommand, dataplane_id: str) -> Obj | None:
    if cmd.port is None:
        return None
    body = _meta("Service", cmd.component, cmd, dataplane_id)
    body["spec"] = {
        "type": "ClusterIP",
        "selector": selector(cmd),
        "ports": [{"name": "http", "port": cmd.port, "targetPort": cmd.port, "protocol": "TCP"}],
    }
    return Obj("Service", cmd.component, body)


def ingress(cmd: DeployCommand, dataplane_id: str) -> Obj | None:
    if cmd.component_type != "web-application" or not cmd.ingress_class or cmd.port is None:
        return None
    rule: Body = {
        "http": {
            "paths": [
                {
                    "path": workload.ingress_path(cmd),
                    "pathType": "Prefix",
                    "backend": {"service": {"name": cmd.component, "port": {"number": cmd.port}}},
                }
            ]
        }
    }
    host = workload.ingress_host(cmd)
    if host:
        rule = {"host": host, **rule}
    body = _meta("Ingress", cmd.component, cmd, dataplane_id)
    body["spec"] = {"ingressClassName": cmd.ingress_class, "rules": [rule]}
    tls = workload.ingress_tls(cmd)
    if tls is not None:
        body["spec"]["tls"] = tls
    return Obj("Ingress", cmd.component, body)


def cronjob(cmd: DeployCommand, dataplane_id: str, *, pull: bool) -> Obj:
    body = _meta("CronJob", cmd.component, cmd, dataplane_id)
    body["spec"] = {
        "schedule": cmd.schedule,
        "timeZone": cmd.timezone,
        "concurrencyPolicy": "Forbid",
        "jobTemplate": {
            "metadata": {
                "labels": labels(cmd, dataplane_id),
                "annotations": annotations_for(cmd, dataplane_id),
            },
            "spec": {
                "backoffLimit": 0,
                "template": pod_template(cmd, dataplane_id, pull=pull, restart="Never", with_port=False),
            },
        },
    }
    return Obj("CronJob", cmd.component, body)


def job_template(cmd: DeployCommand, dataplane_id: str, *, pull: bool) -> Obj:
    """Manual task, kind=deploy: the pod spec future runs will use (runs carry their own copy)."""
    name = job_template_name(cmd.component)
    pod = pod_template(cmd, dataplane_id, pull=pull, restart="Never", with_port=False)
    body = _meta("ConfigMap", name, cmd, dataplane_id)
    body["data"] = {TEMPLATE_KEY: json.dumps(pod["spec"], sort_keys=True), "image": cmd.image}
    return Obj("ConfigMap", name, body)


def job(cmd: DeployCommand, dataplane_id: str, *, pull: bool) -> Obj:
    """Manual task, kind=run: one Job per execution, never retried (backoffLimit 0)."""
    name = job_name(cmd.component, cmd.execution_id or "")
    body = _meta("Job", name, cmd, dataplane_id)
    body["spec"] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
        "template": pod_template(cmd, dataplane_id, pull=pull, restart="Never", with_port=False),
    }
    return Obj("Job", name, body)


def plan(
    cmd: DeployCommand,
    dataplane_id: str,
    *,
    dockerconfigjson: bytes | None,
    secrets: Mapping[str, str] | None = None,
    secret_keys_now: Iterable[str] = (),
) -> list[Obj]:
    """The objects to write, in order; the primary object (see `primary`) is last.

    `secrets`: the opened config secrets (None: the command has none); `secret_keys_now`: the
    keys of the env Secret in the cluster, so that the removed ones are deleted."""
    pull = dockerconfigjson is not None
    objs: list[Obj | None] = [
        pull_secret(cmd, dataplane_id, dockerconfigjson) if dockerconfigjson else None,
        env_secret(cmd, dataplane_id, secrets, drop=secret_keys_now) if secrets is not None else None,
    ]
    if cmd.kind == "run":
        objs.append(job(cmd, dataplane_id, pull=pull))
    elif cmd.component_type in ("service", "web-application"):
        objs += [
            service(cmd, dataplane_id),
            ingress(cmd, dataplane_id),
            hpa(cmd, dataplane_id),
            deployment(cmd, dataplane_id, pull=pull),
        ]
    elif cmd.component_type == "scheduled-task":
        objs.append(cronjob(cmd, dataplane_id, pull=pull))
    else:
        objs.append(job_template(cmd, dataplane_id, pull=pull))
    return [o for o in objs if o is not None]


def strip_nulls(value: Any) -> Any:
    """What a create (POST) sends: the same object without the nulls that merge patch uses to delete."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


_PER_DEPLOY = (naming.ANNOTATION_DEPLOYMENT_ID, naming.ANNOTATION_SEQ, naming.ANNOTATION_EXECUTION_ID)


def unchanged(current: Mapping[str, Any], desired: Body) -> bool:
    """Would writing `desired` over `current` change nothing but the per-deploy annotations?

    Then a dependent object (Service, Secret, Ingress, HPA) is not written again: its seq says
    which deploy last changed it, and the primary object's seq which one is applied.
    """
    notes = (desired.get("metadata") or {}).get("annotations") or {}
    if any(key in notes for key in _PER_DEPLOY):
        kept = {k: v for k, v in notes.items() if k not in _PER_DEPLOY}
        desired = {**desired, "metadata": {**desired["metadata"], "annotations": kept}}
    return not mergepatch.changes(current, desired)
