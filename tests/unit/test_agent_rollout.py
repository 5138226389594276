"""Rollout truth as `kubectl rollout status` tells it, and Pod failures that will not fix themselves."""

from __future__ import annotations

from typing import Any

import pytest

from services.data_plane_agent.domain.rollout import deployment_verdict, job_verdict, pod_failure, pods_of


def deployment(
    *,
    generation: int = 2,
    observed: int = 2,
    replicas: int = 1,
    updated: int = 1,
    total: int = 1,
    available: int = 1,
    progressing_reason: str = "NewReplicaSetAvailable",
) -> dict[str, Any]:
    return {
        "metadata": {"name": "api", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": [{"type": "Progressing", "status": "True", "reason": progressing_reason}],
        },
    }


@pytest.mark.parametrize(
    ("fields", "status", "hint"),
    [
        ({}, "succeeded", "successfully rolled out"),
        ({"generation": 3, "observed": 2}, "progressing", "spec update to be observed"),
        # The controller has not seen the new spec yet: an old "complete" status must not count.
        (
            {"generation": 3, "observed": 2, "progressing_reason": "ProgressDeadlineExceeded"},
            "progressing",
            "",
        ),
        ({"progressing_reason": "ProgressDeadlineExceeded", "available": 0}, "failed", ""),
        ({"replicas": 3, "updated": 1, "total": 3}, "progressing", "1 out of 3 new replicas"),
        ({"total": 2, "updated": 1}, "progressing", "1 old replicas are pending termination"),
        ({"available": 0}, "progressing", "0 of 1 updated replicas are available"),
    ],
)
def test_deployment_verdict_follows_kubectl(fields: dict[str, Any], status: str, hint: str) -> None:
    verdict = deployment_verdict(deployment(**fields))
    assert verdict.status == status
    assert hint in (verdict.message or "")
    if status == "failed":
        assert verdict.reason == "progress_deadline_exceeded"


def test_a_deployment_without_status_is_progressing() -> None:
    assert (
        deployment_verdict({"metadata": {"name": "api", "generation": 1}, "spec": {}}).status == "progressing"
    )


def pod(
    reason: str | None = None, *, terminated: dict[str, Any] | None = None, **notes: str
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if reason:
        state = {"waiting": {"reason": reason, "message": f"details of {reason}"}}
    if terminated:
        state = {"terminated": terminated}
    return {
        "metadata": {"annotations": {f"landfall.dev/{k.replace('_', '-')}": v for k, v in notes.items()}},
        "status": {"containerStatuses": [{"name": "api", "state": state}]},
    }


@pytest.mark.parametrize(
    "reason",
    [
        "ErrImagePull",
        "ImagePullBackOff",
        "CrashLoopBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
    ],
)
def test_stuck_containers_fail_the_rollout_with_their_reason(reason: str) -> None:
    verdict = pod_failure([pod(), pod(reason)])
    assert verdict is not None
    assert verdict.status == "failed"
    assert verdict.reason == reason
    assert verdict.message == f"container api: details of {reason}"


def test_containers_that_are_merely_starting_do_not_fail_anything() -> None:
    assert pod_failure([pod("ContainerCreating"), pod("PodInitializing"), pod()]) is None


def test_only_the_pods_of_this_deployment_count() -> None:
    pods = [pod("ImagePullBackOff", deployment_id="dep_old"), pod(deployment_id="dep_new"), pod()]
    assert len(pods_of(pods, deployment_id="dep_new")) == 2
    assert pod_failure(pods_of(pods, deployment_id="dep_new")) is None


def job(condition: str | None, reason: str = "") -> dict[str, Any]:
    conditions = (
        [{"type": condition, "status": "True", "reason": reason, "message": "m"}] if condition else []
    )
    return {"metadata": {"name": "migrate-abc"}, "status": {"conditions": conditions}}


def test_job_verdicts() -> None:
    assert job_verdict(job("Complete"), []).status == "succeeded"
    assert job_verdict(job(None), [pod()]).status == "progressing"
    failed = job_verdict(
        job("Failed", "BackoffLimitExceeded"), [pod(terminated={"exitCode": 3, "reason": "Error"})]
    )
    assert (failed.status, failed.reason, failed.message) == ("failed", "Error", "container api: exit code 3")
    bare = job_verdict(job("Failed", "DeadlineExceeded"), [])
    assert (bare.status, bare.reason) == ("failed", "DeadlineExceeded")
    stuck = job_verdict(job(None), [pod("ImagePullBackOff")])
    assert (stuck.status, stuck.reason) == ("failed", "ImagePullBackOff")


def test_pods_of_a_run_are_told_apart_by_job_name_and_execution() -> None:
    mine = pod(execution_id="exe_1")
    other = pod("ErrImagePull", execution_id="exe_2")
    foreign_job = {**pod("ErrImagePull"), "metadata": {"labels": {"job-name": "migrate-zzz"}}}
    kept = pods_of([mine, other, foreign_job], execution_id="exe_1", job_name="migrate-abc")
    assert kept == [mine]
