"""Auto-rollback and registries nobody reaches, on the whole stack (issue 14), as CI and a person see
them: the webhook, its long poll, the public API and the objects the sandbox cluster stores.

* A registry on a loopback port nothing listens on: the deployment ends `failed` with
  `registry_unreachable` and a `detail` saying what was tried, within the bound (set short here
  through the orchestrator's settings), and CI's long poll learns it.
* A registry only the cluster reaches (the credentials service restarted with no private address
  allowed, so its egress policy refuses the loopback registry): the agent resolves the tag and the
  deployment succeeds pinned by that digest.
* With `auto_rollback` on, an `ImagePullBackOff` (the sandbox's controller fails pods by a failure
  rule on the image) brings back the last succeeded image by digest; CI's wait on the failed
  deployment still answers `failed`, the failed one names its rollback, and a rollback that fails
  too is left alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from libs.contracts.naming import namespace_for
from libs.devstack.processes import free_ports
from libs.devstack.stack import Stack, http
from tests.e2e.conftest import kube_get, running_stack, sandbox_post
from tests.support import wait_until

BOUND_SECONDS = 9  # LANDFALL_REGISTRY_UNREACHABLE_SECONDS for this module's stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra_env = {"LANDFALL_REGISTRY_UNREACHABLE_SECONDS": str(BOUND_SECONDS)}
    with running_stack(tmp_path_factory.mktemp("stack"), extra_env=extra_env) as s:
        yield s


class Component:
    """A service component of the `default` org on a registry of its own, with a CI token."""

    def __init__(self, stack: Stack, *, registry_host: str) -> None:
        self.stack = stack
        self.name = "rb" + uuid.uuid4().hex[:8]
        self.repo = f"team/{self.name}"
        self.registry_host = registry_host
        self.base = f"/v1/orgs/default/projects/default/components/{self.name}"
        _, self.token = stack.add_component(
            self.name, f"{registry_host}/{self.repo}:0", registry=self.name, token_name="ci"
        )

    def configure(self, environment: str, body: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = self.stack.api(
            "orchestrator", "PUT", f"{self.base}/environments/{environment}/config", body
        )
        return config

    def deploy(self, tag: str) -> str:
        """What CI does: the webhook (first environment), answered 202 with the deployment id."""
        status, accepted = http(
            "POST",
            self.stack.url("webhook_gateway") + "/v1/webhooks/deploy",
            token=self.token,
            body={"tag": tag},
        )
        assert status == 202, accepted
        deployment_id: str = accepted["deployment_id"]
        return deployment_id

    def wait(self, deployment_id: str) -> dict[str, Any]:
        """CI's long poll, until the deployment is final."""
        url = f"{self.stack.url('webhook_gateway')}/v1/webhooks/deployments/{deployment_id}?wait=60"
        status, view = http("GET", url, token=self.token, timeout=70)
        assert status == 200, view
        result: dict[str, Any] = view
        return result

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        view: dict[str, Any] = self.stack.api("orchestrator", "GET", f"/v1/deployments/{deployment_id}")
        return view


def test_a_registry_on_a_port_nobody_listens_on_ends_failed_within_the_bound(stack: Stack) -> None:
    (port,) = free_ports(1)
    comp = Component(stack, registry_host=f"127.0.0.1:{port}")
    deployment_id = comp.deploy("1.0")

    final = comp.wait(deployment_id)  # CI learns the outcome; never `pending` for ever

    assert (final["status"], final["reason"]) == ("failed", "registry_unreachable"), final
    detail = comp.deployment(deployment_id)["detail"]
    assert "control plane: " in detail, detail
    assert f"data plane {stack.state['provisioned']['dataplane_id']}" in detail, detail


def test_a_failed_rollout_rolls_back_to_the_last_good_image_once(stack: Stack) -> None:
    comp = Component(stack, registry_host=stack.registry.host)
    good_digest = stack.registry.push_image(comp.repo, "1.0")
    bad_digest = stack.registry.push_image(comp.repo, "2.0")
    assert comp.configure("development", {"auto_rollback": True})["version"] == 1
    good = comp.wait(comp.deploy("1.0"))
    assert good["status"] == "succeeded", good
    sandbox_post(
        stack,
        "/_sandbox/failure-rules",
        {"image_contains": bad_digest, "reason": "ImagePullBackOff", "message": "Back-off pulling image"},
    )

    bad_id = comp.deploy("2.0")
    bad = comp.wait(bad_id)

    assert (bad["status"], bad["reason"]) == ("failed", "ImagePullBackOff"), bad  # what CI hears
    rollback_id = wait_until(
        lambda: comp.deployment(bad_id).get("rolled_back_by"), what="the failed deployment's rollback"
    )
    rollback = comp.wait(rollback_id)
    assert (rollback["status"], rollback["source"]) == ("succeeded", "rollback"), rollback
    assert rollback["digest"] == good_digest
    assert rollback["config_version"] == good["config_version"] == 1
    namespace = namespace_for("default", "default", "development")
    _, running = kube_get(stack, f"/apis/apps/v1/namespaces/{namespace}/deployments/{comp.name}")
    assert running["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@" + good_digest)

    # the good image fails now too: its rollback fails and is not rolled back again
    sandbox_post(
        stack, "/_sandbox/failure-rules", {"image_contains": good_digest, "reason": "CrashLoopBackOff"}
    )
    again_id = comp.deploy("2.0")
    assert comp.wait(again_id)["status"] == "failed"
    second_id = wait_until(
        lambda: comp.deployment(again_id).get("rolled_back_by"), what="the second rollback"
    )
    assert comp.wait(second_id)["status"] == "failed"
    wait_until(
        lambda: "not rolled back: it was a rollback itself" in comp.deployment(second_id)["notes"],
        what="the note on the failed rollback",
    )
    history = stack.api("orchestrator", "GET", f"{comp.base}/deployments?environment=development")["items"]
    assert [d["source"] for d in history] == ["rollback", "webhook", "rollback", "webhook", "webhook"]


def test_a_registry_only_the_cluster_reaches_is_resolved_by_the_agent(stack: Stack) -> None:
    comp = Component(stack, registry_host=stack.registry.host)
    digest = stack.registry.push_image(comp.repo, "3.0")
    # the credentials service again, now with no private address allowed: its egress policy refuses
    # the loopback registry (the control plane cannot reach it), while the agent in the cluster can
    stack.stop_service("credentials")
    stack.start_service("credentials", extra={"LANDFALL_REGISTRY_PRIVATE_HOSTS": ""})
    try:
        deployment_id = comp.deploy("3.0")
        final = comp.wait(deployment_id)
        assert final["status"] == "succeeded", final
        assert final["digest"] == digest
        assert "resolved inside the data plane" in final["notes"]
    finally:
        stack.stop_service("credentials")
        stack.start_service("credentials")
