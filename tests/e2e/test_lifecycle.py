"""The deploy lifecycle through the public API and the sandbox Kubernetes API (issue: Deploy lifecycle).

Component types and their objects, promotion with the same digest, rollback,
supersession, manual task runs with arguments, an agent catching up in order,
tag → digest pinning and `image_not_found`.
"""

from __future__ import annotations

import uuid
from typing import Any

from libs.contracts.naming import namespace_for
from libs.devstack.stack import Stack, http
from tests.e2e.conftest import final_deployment, kube_get
from tests.support import wait_until

ORG = "/v1/orgs/default"


def _registry(stack: Stack) -> str:
    if "e2e_registry" not in stack.state:
        reg = stack.api(
            "credentials",
            "POST",
            f"{ORG}/registries",
            {"display_name": "lifecycle", "auth": {"type": "anonymous", "host": stack.registry.host}},
        )
        stack.state["e2e_registry"] = reg["id"]
    return str(stack.state["e2e_registry"])


def _component(stack: Stack, kind: str, **extra: Any) -> tuple[str, str]:
    name = kind.split("-")[0][:4] + uuid.uuid4().hex[:6]
    repo = f"team/{name}"
    stack.api(
        "orchestrator",
        "POST",
        f"{ORG}/projects/default/components",
        {
            "name": name,
            "type": kind,
            "registry_id": _registry(stack),
            "image": f"{stack.registry.host}/{repo}:0",
            **extra,
        },
    )
    return name, repo


def _deploy(stack: Stack, name: str, body: dict[str, str]) -> dict[str, Any]:
    dep: dict[str, Any] = stack.api(
        "orchestrator", "POST", f"{ORG}/projects/default/components/{name}/deployments", body, expect=(202,)
    )
    return dep


def _ns(env: str = "development") -> str:
    return namespace_for("default", "default", env)


def test_each_component_type_lands_as_its_objects(stack: Stack) -> None:
    svc, svc_repo = _component(stack, "service", port=9000)
    web, web_repo = _component(stack, "web-application", port=8081)
    cron, cron_repo = _component(stack, "scheduled-task", schedule="*/5 * * * *", timezone="Europe/Berlin")
    task, task_repo = _component(stack, "manual-task")
    for repo in (svc_repo, web_repo, cron_repo, task_repo):
        stack.registry.push_image(repo, "1.0")
    deps = {name: _deploy(stack, name, {"tag": "1.0"}) for name in (svc, web, cron, task)}
    for name, dep in deps.items():
        assert final_deployment(stack, dep["id"])["status"] == "succeeded", name

    code, service = kube_get(stack, f"/api/v1/namespaces/{_ns()}/services/{svc}")
    assert code == 200
    assert service["spec"]["ports"][0]["port"] == 9000
    code, deployment = kube_get(stack, f"/apis/apps/v1/namespaces/{_ns()}/deployments/{web}")
    assert code == 200
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 8081

    code, cronjob = kube_get(stack, f"/apis/batch/v1/namespaces/{_ns()}/cronjobs/{cron}")
    assert code == 200
    assert cronjob["spec"]["schedule"] == "*/5 * * * *"
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    for obj, name in ((service, svc), (deployment, web), (cronjob, cron)):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "landfall"
        assert labels["landfall.dev/component"] == name
        assert labels["landfall.dev/environment"] == "development"
        assert obj["metadata"]["annotations"]["landfall.dev/deployment-id"] == deps[name]["id"]

    # A manual task runs on demand, with arguments, and keeps a history of its runs.
    run = stack.api(
        "orchestrator",
        "POST",
        f"{ORG}/projects/default/components/{task}/executions",
        {"args": ["--since", "2026-01-01"]},
        expect=(202,),
    )
    assert run["id"].startswith("exe_")

    def finished() -> dict[str, Any] | None:
        items = stack.api("orchestrator", "GET", f"{ORG}/projects/default/components/{task}/executions")[
            "items"
        ]
        mine = next(e for e in items if e["id"] == run["id"])
        return mine if mine["status"] in {"succeeded", "failed"} else None

    assert wait_until(finished, what="execution")["status"] == "succeeded"
    code, jobs = kube_get(stack, f"/apis/batch/v1/namespaces/{_ns()}/jobs")
    assert code == 200
    job = next(j for j in jobs["items"] if j["metadata"]["labels"].get("landfall.dev/component") == task)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["--since", "2026-01-01"]
    # Executions are for manual tasks only.
    status, problem = http(
        "POST",
        f"{stack.url('orchestrator')}{ORG}/projects/default/components/{svc}/executions",
        token=stack.org_key,
        body={},
    )
    assert status == 409, problem


def test_promotion_carries_the_same_digest_and_rollback_redeploys_an_older_one(stack: Stack) -> None:
    name, repo = _component(stack, "service")
    d1 = stack.registry.push_image(repo, "1.0")
    d2 = stack.registry.push_image(repo, "2.0")
    first = final_deployment(stack, _deploy(stack, name, {"tag": "1.0"})["id"])
    assert first["digest"] == d1
    second = final_deployment(stack, _deploy(stack, name, {"tag": "2.0"})["id"])
    assert second["status"] == "succeeded"
    assert second["digest"] == d2
    # CI pushes 2.0 again: the tag now names another image. A promotion carries what runs in
    # development (d2), never what the tag says today.
    moved = stack.registry.push_image(repo, "2.0")
    assert moved not in (d1, d2)

    base = f"{ORG}/projects/default/components/{name}"
    skipping = http(
        "POST",
        f"{stack.url('orchestrator')}{base}/promotions",
        token=stack.org_key,
        body={"from": "development", "to": "production"},
    )
    assert skipping[0] == 422, skipping  # environments are promoted in pipeline order
    for src, dst in (("development", "staging"), ("staging", "production")):
        promo = stack.api(
            "orchestrator", "POST", f"{base}/promotions", {"from": src, "to": dst}, expect=(202,)
        )
        done = final_deployment(stack, promo["id"])
        assert done["status"] == "succeeded"
        assert done["environment"] == dst
        assert done["digest"] == d2
    code, prod = kube_get(stack, f"/apis/apps/v1/namespaces/{_ns('production')}/deployments/{name}")
    assert code == 200
    assert prod["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"@{d2}")
    code, staging = kube_get(stack, f"/apis/apps/v1/namespaces/{_ns('staging')}/deployments/{name}")
    assert code == 200
    assert staging["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"@{d2}")

    # Roll back development to the first image, taken from the history.
    history = stack.api("orchestrator", "GET", f"{base}/deployments?environment=development")["items"]
    assert [h["digest"] for h in history[:2]] == [d2, d1]  # newest first
    back = final_deployment(
        stack, _deploy(stack, name, {"image": f"{stack.registry.host}/{repo}@{d1}"})["id"]
    )
    assert back["status"] == "succeeded"
    assert back["source"] == "rollback"
    component = stack.api("orchestrator", "GET", base)
    assert component["environments"]["development"]["digest"] == d1
    assert component["environments"]["production"]["digest"] == d2


def test_a_missing_tag_fails_at_once_with_image_not_found(stack: Stack) -> None:
    name, repo = _component(stack, "service")
    stack.registry.push_image(repo, "1.0")
    dep = final_deployment(stack, _deploy(stack, name, {"tag": "does-not-exist"})["id"])
    assert dep["status"] == "failed"
    assert dep["reason"] == "image_not_found"
    assert kube_get(stack, f"/apis/apps/v1/namespaces/{_ns()}/deployments/{name}")[0] == 404


def test_an_agent_that_was_away_applies_in_order_and_ends_on_the_newer(stack: Stack) -> None:
    name, repo = _component(stack, "service")
    stack.registry.push_image(repo, "1.0")
    d2 = stack.registry.push_image(repo, "2.0")
    stack.stop_service("data_plane_agent")
    try:
        older = _deploy(stack, name, {"tag": "1.0"})
        newer = _deploy(stack, name, {"tag": "2.0"})
        # The older one was replaced before it could finish.
        assert final_deployment(stack, older["id"])["status"] == "superseded"
    finally:
        stack.start_service("data_plane_agent")
    assert final_deployment(stack, newer["id"])["status"] == "succeeded"
    code, deployment = kube_get(stack, f"/apis/apps/v1/namespaces/{_ns()}/deployments/{name}")
    assert code == 200
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f"@{d2}")
    assert deployment["metadata"]["annotations"]["landfall.dev/deployment-id"] == newer["id"]


def test_deleting_a_component_removes_what_it_runs_and_leaves_its_neighbours(stack: Stack) -> None:
    svc, svc_repo = _component(stack, "service", port=9000)
    task, task_repo = _component(stack, "manual-task")
    keep, keep_repo = _component(stack, "service")
    for repo in (svc_repo, task_repo, keep_repo):
        stack.registry.push_image(repo, "1.0")
    for name in (svc, task, keep):
        assert final_deployment(stack, _deploy(stack, name, {"tag": "1.0"})["id"])["status"] == "succeeded", (
            name
        )
    run = stack.api(
        "orchestrator", "POST", f"{ORG}/projects/default/components/{task}/executions", {}, expect=(202,)
    )
    assert run["id"].startswith("exe_")

    def jobs_of(component: str) -> list[Any]:
        code, jobs = kube_get(stack, f"/apis/batch/v1/namespaces/{_ns()}/jobs")
        assert code == 200
        return [
            j for j in jobs["items"] if j["metadata"]["labels"].get("landfall.dev/component") == component
        ]

    wait_until(lambda: jobs_of(task) or None, what="the run's Job")

    for name in (svc, task):
        stack.api("orchestrator", "DELETE", f"{ORG}/projects/default/components/{name}", expect=(204,))

    paths = [
        f"/apis/apps/v1/namespaces/{_ns()}/deployments/{svc}",
        f"/api/v1/namespaces/{_ns()}/services/{svc}",
        f"/api/v1/namespaces/{_ns()}/configmaps/{task}-job-template",
    ]

    def removed() -> bool | None:
        return (all(kube_get(stack, p)[0] == 404 for p in paths) and not jobs_of(task)) or None

    wait_until(removed, what="the deleted components' objects gone from the data plane")
    code, _ = kube_get(stack, f"/apis/apps/v1/namespaces/{_ns()}/deployments/{keep}")
    assert code == 200
    status, _ = http(
        "GET", f"{stack.url('orchestrator')}{ORG}/projects/default/components/{svc}", token=stack.org_key
    )
    assert status == 404
