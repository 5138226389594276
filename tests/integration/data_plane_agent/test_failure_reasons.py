"""Every failure reason the agent reports (libs/contracts/reasons.py), each made to happen for real.

The agent against real NATS and the sandbox cluster; the sandbox is made to misbehave the ways
a cluster does (a policy that denies an object, a server that answers nonsense, an image that
cannot be pulled, an object deleted under a rollout, a rollout that never makes progress), never
the agent. After each
failure the agent goes on: the next command of the data plane is applied as usual, which is
also what proves that the failure was reported once and not retried forever.
`command_rejected` and `pull_secret_wrong_recipient` have tests of their own (test_trust.py,
test_signatures.py, test_deploys.py); the config secrets' reasons belong to the config tests.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from libs.contracts import reasons
from libs.contracts.ids import new_id
from libs.contracts.messages import DeployCommand, RolloutReport, SealedSecret
from services.data_plane_agent.domain.manifests import job_name
from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import NAMESPACE, Harness, seal


async def sandbox(h: Harness, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method,
            h.cluster.url + path,
            data=json.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json", **headers},
        ) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def failed(h: Harness, cmd: DeployCommand, *, execution_id: str | None = None) -> RolloutReport:
    report = await h.wait_report(cmd.deployment_id, {"succeeded", "failed"}, execution_id=execution_id)
    assert report.status == "failed", report
    return report


async def next_one_applies(h: Harness, seq: int) -> None:
    """The agent goes on after a failure: a later command of the data plane succeeds."""
    await h.deployed("after", seq=seq)


async def test_an_object_the_cluster_denies_is_apply_rejected(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        status, _ = await sandbox(
            h,
            "POST",
            "/_sandbox/admission-rules",
            {"image_contains": "/unsigned:", "message": "images must be signed"},
        )
        assert status == 201
        cmd = await h.deploy("api", image="registry.example.com/acme/unsigned:1")
        report = await failed(h, cmd)
        assert report.reason == reasons.APPLY_REJECTED
        assert "images must be signed" in (report.message or "")
        assert h.obj("apps/v1", "deployments", "api") is None
        await next_one_applies(h, seq=2)


async def test_a_cluster_answering_nonsense_is_an_agent_error(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        # A broken webhook or proxy in front of the API server: 200, but not an object.
        rule = {"image_contains": "/garbled:", "status": 200, "answer": [0]}
        assert (await sandbox(h, "POST", "/_sandbox/admission-rules", rule))[0] == 201
        cmd = await h.deploy("api", image="registry.example.com/acme/garbled:1")
        report = await failed(h, cmd)
        assert report.reason == reasons.AGENT_ERROR
        assert report.message  # the kind of error, never its text (which may quote the answer)
        await next_one_applies(h, seq=2)


async def test_a_run_whose_job_name_another_run_holds_is_job_name_taken(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        deploy = await h.deployed("migrate", component_type="manual-task", port=None)
        first_id = new_id("exe")
        # Another execution whose id ends the same way: its Job would have the same name.
        other_id = new_id("exe")[:-8] + first_id[-8:]
        assert job_name("migrate", first_id) == job_name("migrate", other_id)
        first = deploy.model_copy(update={"kind": "run", "execution_id": first_id})
        await h.send(first)
        done = await h.wait_report(deploy.deployment_id, execution_id=first_id)
        assert done.status == "succeeded"

        other = deploy.model_copy(update={"kind": "run", "execution_id": other_id})
        await h.send(other)
        report = await failed(h, deploy, execution_id=other_id)
        assert report.reason == reasons.JOB_NAME_TAKEN
        job = h.obj("batch/v1", "jobs", job_name("migrate", first_id))
        assert job is not None
        assert job["metadata"]["annotations"]["landfall.dev/execution-id"] == first_id  # left alone
        await next_one_applies(h, seq=2)


async def test_an_image_that_cannot_be_pulled_is_image_pull_back_off(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        # A Pod's waiting reason that is a failure of its own: reported as Kubernetes says it.
        h.cluster.add_failure_rule("acme/api:broken", "ImagePullBackOff")
        cmd = await h.deploy("api", image="registry.example.com/acme/api:broken")
        report = await failed(h, cmd)
        assert report.reason == "ImagePullBackOff"
        assert "Back-off pulling image" in (report.message or "")
        assert [r.status for r in h.reports_for(cmd.deployment_id)] == ["progressing", "failed"]
        await next_one_applies(h, seq=2)


async def test_a_deployment_deleted_under_its_rollout_is_deleted(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        h.cluster.pause_controller()  # the rollout stays in progress
        cmd = await h.deploy("api")
        await h.wait_report(cmd.deployment_id, "progressing")
        status, _ = await sandbox(h, "DELETE", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/api")
        assert status == 200
        report = await failed(h, cmd)
        assert report.reason == reasons.DELETED
        h.cluster.resume_controller()
        await next_one_applies(h, seq=2)


async def test_a_rollout_that_never_progresses_is_progress_deadline_exceeded(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        # Pods that stay waiting for a reason that is no failure of its own: only the deadline ends it.
        h.cluster.add_failure_rule("/stuck:", "ContainerCreating")
        cmd = await h.deploy("api", image="registry.example.com/acme/stuck:1")
        await h.wait_report(cmd.deployment_id, "progressing")
        # The cluster's operator shortens the deadline the agent wrote (600 s) to one second.
        status, _ = await sandbox(
            h,
            "PATCH",
            f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/api",
            {"spec": {"progressDeadlineSeconds": 1}},
            **{"Content-Type": "application/merge-patch+json"},
        )
        assert status == 200
        report = await failed(h, cmd)
        assert report.reason == reasons.PROGRESS_DEADLINE_EXCEEDED
        assert "timed out progressing" in (report.message or "")
        await next_one_applies(h, seq=2)


async def test_a_pull_secret_that_does_not_open_is_pull_secret_unreadable(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        good = seal(b'{"auths": {}}', h.identity.public_key)
        # Sealed to this agent's key id, but not a box its key opens (corrupted on the way).
        garbled = SealedSecret(
            recipient_key_id=good.recipient_key_id,
            ciphertext=base64.b64encode(b"\0" * 80).decode(),
            registry_id=good.registry_id,
        )
        cmd = await h.deploy("api", pull_secret=garbled)
        report = await failed(h, cmd)
        assert report.reason == reasons.PULL_SECRET_UNREADABLE
        assert h.obj("v1", "secrets", "api-pull") is None
        assert h.obj("apps/v1", "deployments", "api") is None
        await next_one_applies(h, seq=2)
