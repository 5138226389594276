"""Per-environment config end to end: the public API, Vault, the credentials service's seal, the
agent, and the objects the sandbox Kubernetes API stores (issue 14).

A config change rolls the running image out again with the environment's replicas, resources,
env and secrets; the secret's value reaches the cluster only inside the `Opaque` Secret the
container reads through `envFrom`, never a log line or an API answer; a secret change alone rolls
out too; a promotion carries the image into the target environment's own config.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from libs.contracts.naming import namespace_for
from libs.devstack.stack import Stack
from tests.e2e.conftest import final_deployment, kube_get, logs_of
from tests.support import wait_until

ORG = "/v1/orgs/default"
SECRET = "e2e-" + uuid.uuid4().hex  # a value nothing else could contain
ROTATED = "e2e-rotated-" + uuid.uuid4().hex


def _final(stack: Stack, deployment_id: str) -> dict[str, Any]:
    return final_deployment(stack, deployment_id, timeout=40)


def _kube(stack: Stack, path: str) -> dict[str, Any]:
    code, body = kube_get(stack, path)
    assert code == 200, (path, body)
    result: dict[str, Any] = body
    return result


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_config_and_secrets_land_in_the_cluster_and_nowhere_else(stack: Stack) -> None:
    registry = stack.api(
        "credentials",
        "POST",
        f"{ORG}/registries",
        {"display_name": "config-e2e", "auth": {"type": "anonymous", "host": stack.registry.host}},
    )
    name = "cfg" + uuid.uuid4().hex[:6]
    component = f"{ORG}/projects/default/components/{name}"
    stack.registry.push_image(f"team/{name}", "1.0")
    stack.api(
        "orchestrator",
        "POST",
        f"{ORG}/projects/default/components",
        {
            "name": name,
            "type": "service",
            "registry_id": registry["id"],
            "image": f"{stack.registry.host}/team/{name}:1.0",
            "port": 8080,
            "env": {"FROM_COMPONENT": "yes", "LOG_LEVEL": "warn"},
        },
    )
    first = stack.api("orchestrator", "POST", f"{component}/deployments", {"tag": "1.0"}, expect=(202,))
    assert _final(stack, first["id"])["status"] == "succeeded"

    config = stack.api(
        "orchestrator",
        "PUT",
        f"{component}/environments/development/config",
        {
            "replicas": 3,
            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
            "env": {"LOG_LEVEL": "debug"},
            "secrets": {"DB_PASSWORD": SECRET},
            "probes": {"readiness": {"path": "/healthz", "period_seconds": 5}},
        },
    )
    assert config["secret_names"] == ["DB_PASSWORD"]
    rollout = _final(stack, config["deployment_id"])
    assert rollout["status"] == "succeeded", rollout
    assert rollout["source"] == "config"
    assert rollout["config_version"] == config["version"]

    ns = namespace_for("default", "default", "development")
    deployment = _kube(stack, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    assert deployment["spec"]["replicas"] == 3
    container = _container(deployment)
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "64Mi"},
        "limits": {"memory": "128Mi"},
    }
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["LOG_LEVEL"] == "debug"  # the environment's env over the component's
    assert env["FROM_COMPONENT"] == "yes"
    assert "DB_PASSWORD" not in env
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"secretRef": {"name": f"{name}-env"}} in container["envFrom"]
    secret = _kube(stack, f"/api/v1/namespaces/{ns}/secrets/{name}-env")
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "landfall"
    assert secret["metadata"]["labels"]["landfall.dev/component"] == name
    assert base64.b64decode(secret["data"]["DB_PASSWORD"]).decode() == SECRET
    version_before = deployment["spec"]["template"]["metadata"]["annotations"]["landfall.dev/config-version"]

    # A change of the secret alone rolls out, and the cluster gets the new value.
    rotated = stack.api(
        "orchestrator",
        "PUT",
        f"{component}/environments/development/config",
        {
            **{k: v for k, v in config.items() if k not in ("version", "secret_names", "deployment_id")},
            "secrets": {"DB_PASSWORD": ROTATED},
        },
    )
    assert rotated["version"] == config["version"] + 1
    assert _final(stack, rotated["deployment_id"])["source"] == "config"

    def new_value() -> bool:
        data = _kube(stack, f"/api/v1/namespaces/{ns}/secrets/{name}-env")["data"]
        return base64.b64decode(data["DB_PASSWORD"]).decode() == ROTATED

    wait_until(new_value, what="the rotated secret in the cluster")
    deployment = _kube(stack, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["landfall.dev/config-version"] != version_before  # the Pods roll

    # A promotion carries the image by digest into the target's own config.
    staging = stack.api(
        "orchestrator",
        "PUT",
        f"{component}/environments/staging/config",
        {"replicas": 2, "env": {"WHERE": "staging"}},
    )
    assert staging.get("deployment_id") is None  # nothing runs in staging yet
    promoted = stack.api(
        "orchestrator",
        "POST",
        f"{component}/promotions",
        {"from": "development", "to": "staging"},
        expect=(202,),
    )
    final = _final(stack, promoted["id"])
    assert final["status"] == "succeeded", final
    assert final["config_version"] == staging["version"]
    assert final["digest"] == rollout["digest"]
    staged = _kube(
        stack, f"/apis/apps/v1/namespaces/{namespace_for('default', 'default', 'staging')}/deployments/{name}"
    )
    assert staged["spec"]["replicas"] == 2
    staged_env = {e["name"]: e.get("value") for e in _container(staged).get("env", [])}
    assert staged_env["WHERE"] == "staging"
    assert staged_env["LOG_LEVEL"] == "warn"  # the component's: staging does not set it
    assert f"{name}-env" not in json.dumps(_container(staged).get("envFrom"))  # staging has no secrets
    assert (
        kube_get(
            stack, f"/api/v1/namespaces/{namespace_for('default', 'default', 'staging')}/secrets/{name}-env"
        )[0]
        == 404
    )

    # The value is in the cluster's Secret and nowhere a person or a log could read it.
    answers = json.dumps(
        [
            stack.api("orchestrator", "GET", f"{component}/environments/development/config"),
            stack.api("orchestrator", "GET", f"{component}/deployments"),
            stack.api("orchestrator", "GET", f"{ORG}/audit?limit=200"),
        ]
    )
    logs = logs_of(stack)
    for value in (SECRET, ROTATED):
        assert value not in answers
        assert value not in logs
