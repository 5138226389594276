"""An image goes from a CI webhook to a Deployment in the data plane.

Four services run as separate processes; this test only speaks their public
HTTP APIs (API.md) and reads the sandbox Kubernetes API like `kubectl` would.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid

import pytest

from libs.contracts.naming import namespace_for
from libs.devstack.servers import DockerRegistry
from libs.devstack.stack import Stack, http
from tests.conftest import REGISTRY_USERS
from tests.e2e.conftest import kube_get, logs_of
from tests.support import wait_until


def _component(stack: Stack, *, registry_host: str, auth: dict[str, str], name: str) -> tuple[str, str]:
    """Register a registry, a service component on it, and a CI token; return (registry id, token)."""
    registry_id, token = stack.add_component(name, f"{registry_host}/team/{name}:1.0", auth=auth)
    assert token.startswith("lfci_")
    return registry_id, token


def _webhook(stack: Stack, token: str, body: dict[str, str]) -> tuple[int, dict[str, str]]:
    status, payload = http(
        "POST", stack.url("webhook_gateway") + "/v1/webhooks/deploy", token=token, body=body
    )
    return status, payload


def _wait_status(stack: Stack, token: str, deployment_id: str, wait: int = 30) -> dict[str, str]:
    status, payload = http(
        "GET",
        f"{stack.url('webhook_gateway')}/v1/webhooks/deployments/{deployment_id}?wait={wait}",
        token=token,
        timeout=wait + 10,
    )
    assert status == 200, payload
    assert isinstance(payload, dict)
    return payload


def test_ci_webhook_deploys_an_image_to_the_data_plane(stack: Stack) -> None:
    name = "web" + uuid.uuid4().hex[:6]
    digest = stack.registry.push_image(f"team/{name}", "1.1")
    _, token = _component(stack, registry_host=stack.registry.host, auth={"type": "anonymous"}, name=name)

    status, accepted = _webhook(stack, token, {"tag": "1.1"})
    assert status == 202, accepted
    assert accepted["deployment_id"].startswith("dep_")
    assert accepted["status_url"].endswith(f"/v1/webhooks/deployments/{accepted['deployment_id']}")

    final = _wait_status(stack, token, accepted["deployment_id"])
    assert final["status"] == "succeeded", final
    assert final["environment"] == "development"
    assert final["digest"] == digest

    ns = namespace_for("default", "default", "development")
    code, deployment = kube_get(stack, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    assert code == 200, deployment
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "landfall"
    assert labels["landfall.dev/org"] == "default"
    assert labels["landfall.dev/project"] == "default"
    assert labels["landfall.dev/component"] == name
    assert labels["landfall.dev/environment"] == "development"
    assert deployment["metadata"]["annotations"]["landfall.dev/deployment-id"] == accepted["deployment_id"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"{stack.registry.host}/team/{name}@{digest}"
    assert not deployment["spec"]["template"]["spec"].get("imagePullSecrets")  # anonymous registry
    code, service = kube_get(stack, f"/api/v1/namespaces/{ns}/services/{name}")
    assert code == 200, service
    assert service["metadata"]["labels"]["landfall.dev/component"] == name


def test_a_deploy_made_while_the_agent_is_down_is_applied_when_it_returns(stack: Stack) -> None:
    name = "late" + uuid.uuid4().hex[:6]
    stack.registry.push_image(f"team/{name}", "2.0")
    _, token = _component(stack, registry_host=stack.registry.host, auth={"type": "anonymous"}, name=name)

    stack.stop_service("data_plane_agent")
    try:
        status, accepted = _webhook(stack, token, {"tag": "2.0"})
        assert status == 202, accepted
        during = _wait_status(stack, token, accepted["deployment_id"], wait=1)
        assert during["status"] in {"pending", "dispatched"}
        ns = namespace_for("default", "default", "development")
        assert kube_get(stack, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")[0] == 404
    finally:
        stack.start_service("data_plane_agent")

    final = _wait_status(stack, token, accepted["deployment_id"])
    assert final["status"] == "succeeded", final


def test_private_registry_gets_a_pull_secret_the_agent_decrypted(
    stack: Stack, docker_registry: DockerRegistry
) -> None:
    user, password = next(iter(REGISTRY_USERS.items()))
    name = "priv" + uuid.uuid4().hex[:6]
    docker_registry.push_image(f"team/{name}", "3.0", username=user, password=password)
    _, token = _component(
        stack,
        registry_host=docker_registry.host,
        auth={"type": "basic", "username": user, "password": password},
        name=name,
    )
    status, accepted = _webhook(stack, token, {"tag": "3.0"})
    assert status == 202, accepted
    assert _wait_status(stack, token, accepted["deployment_id"])["status"] == "succeeded"

    ns = namespace_for("default", "default", "development")
    code, deployment = kube_get(stack, f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")
    assert code == 200
    pull = deployment["spec"]["template"]["spec"]["imagePullSecrets"]
    code, secret = kube_get(stack, f"/api/v1/namespaces/{ns}/secrets/{pull[0]['name']}")
    assert code == 200
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    ((server, entry),) = config["auths"].items()
    assert docker_registry.host in server

    # The secret really authenticates against the registry, as the kubelet would use it.
    req = urllib.request.Request(
        f"{docker_registry.url}/v2/", headers={"Authorization": f"Basic {entry['auth']}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{docker_registry.url}/v2/", timeout=5)
    assert refused.value.code == 401

    # The password is nowhere in the services' logs.
    assert password not in logs_of(stack)


def test_the_management_api_needs_a_key(stack: Stack) -> None:
    """No credential is a 401 problem everywhere; the org key and the platform token both read."""
    for service, path in [
        ("credentials", "/v1/orgs/default/registries"),
        ("orchestrator", "/v1/orgs/default/environments"),
        ("webhook_gateway", "/v1/orgs/default/projects/default/components/x/tokens"),
    ]:
        status, problem = http("GET", stack.url(service) + path)
        assert status == 401, (service, problem)
        assert problem["status"] == 401
        assert problem["title"]
    for token in (stack.org_key, stack.admin_token):
        status, envs = http("GET", stack.url("orchestrator") + "/v1/orgs/default/environments", token=token)
        assert status == 200
        assert [e["name"] for e in envs["items"]] == ["development", "staging", "production"]


def test_every_service_serves_health_metrics_and_openapi(stack: Stack) -> None:
    for service in ("credentials", "orchestrator", "webhook_gateway", "data_plane_agent"):
        base = stack.url(service)
        assert http("GET", base + "/healthz")[0] == 200
        status, ready = http("GET", base + "/readyz")
        assert status == 200, (service, ready)
        status, doc = http("GET", base + "/openapi.json")
        assert status == 200
        assert doc["openapi"].startswith("3.")
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:
            assert b"landfall_http_requests_total" in resp.read()
    status, planes = http(
        "GET", stack.url("orchestrator") + "/v1/orgs/default/dataplanes", token=stack.org_key
    )
    assert status == 200
    local = next(p for p in planes["items"] if p["name"] == "local")
    wait_until(
        lambda: http("GET", stack.url("orchestrator") + "/v1/orgs/default/dataplanes", token=stack.org_key)[
            1
        ]["items"][0]["agent"]["connected"],
        what="agent heartbeat",
    )
    assert local["id"].startswith("dp_")
