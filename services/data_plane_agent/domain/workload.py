"""Pure functions: what an environment's config (`DeployCommand.config`) adds to the objects.

`domain.manifests` builds the objects; this module holds the parts the config decides, so
that a command without config (`config=None`, from orchestrators older than per-environment
config) gets exactly the objects it got before: one replica, no resources, no probes, no
`envFrom`, no HorizontalPodAutoscaler, no env Secret.

What is subtle:

* `replicas` is left OUT of the Deployment (not null) while an HPA scales it: a merge patch
  without the key keeps what the HPA chose, a null would reset it to the default of 1 on every
  deploy. When autoscaling goes away the config's (or 1) is written again and the HPA deleted.
* A container is an item of a list, and a merge patch replaces a list whole: resources, probes
  and `envFrom` need no nulls to disappear, they are simply not in the new container.
* The env Secret's `data` is a map, which a merge patch MERGES: a removed secret needs a null
  for its key (`secret_data(values, drop=...)`), or the old value would stay in the cluster.
* The pod template carries `landfall.dev/config-version`: a changed config (or only a changed
  secret, which changes no other field of the template) still rolls the Pods, and new Pods
  read the new values (environment variables are read once, at container start).
* A probe's port defaults to the component's port; a component without one gets no probe
  (there is nothing to probe over HTTP), rather than an object the API server refuses.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from libs.contracts.config import Probe
from libs.contracts.messages import DeployCommand

Body = dict[str, Any]

ANNOTATION_CONFIG_VERSION: Final = "landfall.dev/config-version"
ANNOTATION_AUTOSCALED: Final = "landfall.dev/autoscaled"
LONG_RUNNING: Final = ("service", "web-application")


def env_secret_name(component: str) -> str:
    return f"{component}-env"


def refers_to_env_secret(obj: Mapping[str, Any], component: str) -> bool:
    """Does this primary object read the component's env Secret (`envFrom`)? The job template keeps
    its pod spec as JSON text, where the name appears with escaped quotes."""
    dumped, name = json.dumps(obj), env_secret_name(component)
    return f'"{name}"' in dumped or f'\\"{name}\\"' in dumped


def was_autoscaled(deployment: Mapping[str, Any]) -> bool:
    """Did the deploy that wrote this Deployment give it an HPA?"""
    notes = (deployment.get("metadata") or {}).get("annotations") or {}
    return notes.get(ANNOTATION_AUTOSCALED) == "true"


def has_secrets(cmd: DeployCommand) -> bool:
    return cmd.secrets is not None


def replicas(cmd: DeployCommand) -> int | None:
    """The Deployment's replicas; None: leave the field out (an HPA scales it)."""
    if cmd.config is None:
        return 1
    if cmd.config.autoscaling is not None:
        return None
    return 1 if cmd.config.replicas is None else cmd.config.replicas


def autoscaled(cmd: DeployCommand) -> bool:
    return (
        cmd.config is not None and cmd.config.autoscaling is not None and cmd.component_type in LONG_RUNNING
    )


def template_annotations(cmd: DeployCommand) -> dict[str, str]:
    if cmd.config_version is None:
        return {}
    return {ANNOTATION_CONFIG_VERSION: str(cmd.config_version)}


def _probe(probe: Probe, port: int | None) -> Body | None:
    port = probe.port if probe.port is not None else port
    if port is None:
        return None
    body: Body = {"httpGet": {"path": probe.path, "port": port, "scheme": "HTTP"}}
    if probe.period_seconds is not None:
        body["periodSeconds"] = probe.period_seconds
    return body


def container_parts(cmd: DeployCommand, *, long_running: bool) -> Body:
    """The container fields the config sets (merged into the container `manifests` builds)."""
    config = cmd.config
    if config is None:
        return {}
    parts: Body = {
        "envFrom": [{"secretRef": {"name": env_secret_name(cmd.component)}}] if has_secrets(cmd) else []
    }
    if config.resources is not None:
        resources = {
            part: {k: v for k, v in amounts.model_dump().items() if v is not None}
            for part, amounts in (
                ("requests", config.resources.requests),
                ("limits", config.resources.limits),
            )
            if amounts is not None
        }
        parts["resources"] = {k: v for k, v in resources.items() if v}
    if long_running and config.probes is not None:
        for field, probe in (
            ("readinessProbe", config.probes.readiness),
            ("livenessProbe", config.probes.liveness),
        ):
            built = _probe(probe, cmd.port) if probe is not None else None
            if built is not None:
                parts[field] = built
    return parts


def hpa_spec(cmd: DeployCommand) -> Body | None:
    """The autoscaling/v2 spec that scales the component's Deployment on CPU; None: no HPA."""
    scaling = cmd.config.autoscaling if cmd.config is not None else None
    if scaling is None or cmd.component_type not in LONG_RUNNING:
        return None
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": cmd.component},
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_percent},
                },
            }
        ],
    }


def ingress_host(cmd: DeployCommand) -> str | None:
    if cmd.config is not None and cmd.config.ingress is not None:
        return cmd.config.ingress.host
    return cmd.ingress_host


def ingress_path(cmd: DeployCommand) -> str:
    if cmd.config is not None and cmd.config.ingress is not None:
        return cmd.config.ingress.path
    return "/"


def ingress_tls(cmd: DeployCommand) -> list[Body] | None:
    """The Ingress's `tls` list: always present with a config (an empty list clears an old one)."""
    if cmd.config is None:
        return None
    ingress = cmd.config.ingress
    if ingress is None or ingress.tls_secret is None:
        return []
    return [{"hosts": [ingress.host], "secretName": ingress.tls_secret}]


def unapplied(cmd: DeployCommand) -> str | None:
    """What the config asks for that this data plane cannot give (said in the `progressing` report)."""
    config = cmd.config
    if config is not None and config.ingress is not None and cmd.component_type == "web-application":
        if not cmd.ingress_class:
            return (
                f"no Ingress for {config.ingress.host}: the data plane has no ingress class"
                " (the Deployment and Service are in place)"
            )
        if cmd.port is None:
            return f"no Ingress for {config.ingress.host}: the component has no port"
    return None


def secret_data(values: Mapping[str, str], *, drop: Iterable[str] = ()) -> dict[str, str | None]:
    """A Secret's `data`: each value base64, and a null for each key in `drop` that is gone."""
    data: dict[str, str | None] = {k: None for k in drop if k not in values}
    data.update({k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())})
    return data
