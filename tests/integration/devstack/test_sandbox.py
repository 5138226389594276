"""The sandbox data plane answers like a Kubernetes API server where the agent depends on it.

Every test talks to a fresh `SandboxCluster` through kubernetes_asyncio, the
client the data-plane agent uses, so these tests pin the wire behaviour
(status codes, Status reasons, metadata bookkeeping, watch events) and not
the sandbox's internals.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from libs.devstack.sandbox import DEPLOYMENT_ID_ANNOTATION, SandboxCluster, write_kubeconfig
from tests.support import eventually

REPO_ROOT = Path(__file__).resolve().parents[3]
MERGE = "application/merge-patch+json"


# kubernetes_asyncio's stubs type bodies as models and lack `_content_type` (which the runtime accepts);
# the agent sends plain dicts and picks patch content types, so the API handles are typed as Any here.
def core_api(api: Any) -> Any:
    return client.CoreV1Api(api)


def apps_api(api: Any) -> Any:
    return client.AppsV1Api(api)


def batch_api(api: Any) -> Any:
    return client.BatchV1Api(api)


@pytest.fixture
async def cluster() -> AsyncIterator[SandboxCluster]:
    async with SandboxCluster() as sandbox:
        yield sandbox


@pytest.fixture
async def api(cluster: SandboxCluster) -> AsyncIterator[Any]:
    async with client.ApiClient(client.Configuration(host=cluster.url)) as api_client:
        yield api_client


@pytest.fixture
async def namespace(api: Any, unique: str) -> str:
    name = f"ns-{unique}"
    await core_api(api).create_namespace({"metadata": {"name": name}})
    return name


def deployment(
    name: str, image: str = "registry.example/web:1", *, replicas: int = 2, deployment_id: str = ""
) -> Any:
    annotations = {DEPLOYMENT_ID_ANNOTATION: deployment_id} if deployment_id else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": image, "env": [{"name": "A", "value": "1"}]}]
                },
            },
        },
    }


def job(name: str, image: str = "registry.example/task:1") -> Any:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"task": name}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": image}]},
            }
        },
    }


def status_of(exc: ApiException) -> dict[str, Any]:
    assert exc.body is not None
    body: dict[str, Any] = json.loads(exc.body)
    return body


async def test_namespaces_are_served_by_the_sandbox(api: Any, unique: str) -> None:
    core = core_api(api)
    name = f"team-{unique}"

    created, code, _ = await core.create_namespace_with_http_info({"metadata": {"name": name}})
    assert code == 201
    assert created.metadata.name == name
    assert created.metadata.uid
    assert created.status.phase == "Active"

    with pytest.raises(ApiException) as duplicate:
        await core.create_namespace({"metadata": {"name": name}})
    assert duplicate.value.status == 409
    assert status_of(duplicate.value)["reason"] == "AlreadyExists"

    fetched = await core.read_namespace(name)
    assert fetched.metadata.uid == created.metadata.uid
    listed = {ns.metadata.name for ns in (await core.list_namespace()).items}
    assert {name, "default", "kube-system"} <= listed

    await core.delete_namespace(name)
    with pytest.raises(ApiException) as missing:
        await core.read_namespace(name)
    assert missing.value.status == 404
    assert status_of(missing.value)["reason"] == "NotFound"


async def test_objects_need_an_existing_namespace(api: Any) -> None:
    with pytest.raises(ApiException) as exc:
        await apps_api(api).create_namespaced_deployment("never-created", deployment("web"))
    assert exc.value.status == 404
    assert status_of(exc.value)["message"] == 'namespaces "never-created" not found'


async def test_create_sets_the_server_side_metadata(api: Any, namespace: str) -> None:
    apps = apps_api(api)

    first, code, _ = await apps.create_namespaced_deployment_with_http_info(namespace, deployment("web"))
    second = await apps.create_namespaced_deployment(namespace, deployment("api"))

    assert code == 201
    assert first.metadata.generation == 1
    assert first.metadata.uid
    assert first.metadata.uid != second.metadata.uid
    assert first.metadata.creation_timestamp is not None
    assert first.metadata.namespace == namespace
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    stored = await apps.read_namespaced_deployment("web", namespace)
    assert stored.metadata.uid == first.metadata.uid


async def test_spec_patch_bumps_generation_and_status_patch_does_not(api: Any, namespace: str) -> None:
    apps = apps_api(api)
    created = await apps.create_namespaced_deployment(namespace, deployment("web"))

    patched = await apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"replicas": 3}}, _content_type=MERGE
    )
    assert patched.metadata.generation == 2
    assert patched.spec.replicas == 3
    assert patched.metadata.uid == created.metadata.uid
    assert patched.metadata.creation_timestamp == created.metadata.creation_timestamp
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    labelled = await apps.patch_namespaced_deployment(
        "web", namespace, {"metadata": {"labels": {"tier": "front"}}}, _content_type=MERGE
    )
    assert labelled.metadata.generation == 2

    status_patched = await apps.patch_namespaced_deployment_status(
        "web", namespace, {"status": {"observedGeneration": 2, "replicas": 7}}, _content_type=MERGE
    )
    assert status_patched.metadata.generation == 2
    assert status_patched.status.replicas == 7
    assert int(status_patched.metadata.resource_version) > int(labelled.metadata.resource_version)

    # The main endpoint ignores .status, as on a real cluster with a status subresource.
    ignored = await apps.patch_namespaced_deployment(
        "web", namespace, {"status": {"replicas": 1}}, _content_type=MERGE
    )
    assert ignored.status.replicas == 7
    assert ignored.metadata.resource_version == status_patched.metadata.resource_version


async def test_strategic_merge_patch_merges_containers_by_name(
    cluster: SandboxCluster, api: Any, namespace: str
) -> None:
    cluster.pause_controller()
    apps = apps_api(api)
    await apps.create_namespaced_deployment(namespace, deployment("web"))

    new_image = {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.example/web:2"}]}}}
    }
    patched = await apps.patch_namespaced_deployment(
        "web", namespace, new_image
    )  # kubernetes_asyncio: strategic

    container = patched.spec.template.spec.containers[0]
    assert container.image == "registry.example/web:2"
    assert [(env.name, env.value) for env in container.env] == [("A", "1")]
    assert patched.metadata.generation == 2


async def _apply(apps: Any, namespace: str, body: dict[str, Any]) -> Any:
    """Server-side apply of the Deployment `web` as the field manager landfall, as the agent does."""
    return await apps.patch_namespaced_deployment(
        "web",
        namespace,
        body,
        field_manager="landfall",
        force=True,
        _content_type="application/apply-patch+yaml",
    )


async def test_server_side_apply_creates_then_prunes_what_it_no_longer_applies(
    api: Any, namespace: str
) -> None:
    apps = apps_api(api)
    desired = deployment("web", deployment_id="dep-1")
    desired["metadata"]["annotations"]["extra"] = "yes"

    created = await _apply(apps, namespace, desired)
    assert created.metadata.generation == 1
    assert created.metadata.annotations["extra"] == "yes"

    del desired["metadata"]["annotations"]["extra"]
    desired["spec"]["replicas"] = 4
    applied = await _apply(apps, namespace, desired)
    assert "extra" not in applied.metadata.annotations
    assert applied.spec.replicas == 4
    assert applied.metadata.generation == 2


async def test_duplicate_create_is_a_409_already_exists_status(api: Any, namespace: str) -> None:
    apps = apps_api(api)
    await apps.create_namespaced_deployment(namespace, deployment("web"))

    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            await apps.create_namespaced_deployment(namespace, deployment("web"))
        assert exc.value.status == 409
        body = status_of(exc.value)
        assert body["kind"] == "Status"
        assert body["status"] == "Failure"
        assert body["reason"] == "AlreadyExists"
        assert body["code"] == 409


async def test_deleting_an_owner_collects_its_dependents_unless_orphaned(api: Any, namespace: str) -> None:
    core = core_api(api)

    async def config_map(name: str, owner: Any = None) -> Any:
        meta: dict[str, Any] = {"name": name}
        if owner is not None:
            ref = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner.metadata.name,
                "uid": owner.metadata.uid,
            }
            meta["ownerReferences"] = [ref]
        return await core.create_namespaced_config_map(namespace, {"metadata": meta, "data": {}})

    async def names() -> set[str]:
        return {cm.metadata.name for cm in (await core.list_namespaced_config_map(namespace)).items}

    owner = await config_map("owner")
    await config_map("child-1", owner)
    await config_map("child-2", owner)
    await config_map("released", owner)
    await config_map("unrelated")
    # A dependent whose owner reference was taken away is no longer collected with the owner.
    await core.patch_namespaced_config_map(
        "released", namespace, {"metadata": {"ownerReferences": None}}, _content_type=MERGE
    )
    await core.delete_namespaced_config_map("owner", namespace)
    assert await names() == {"released", "unrelated"}

    keeper = await config_map("keeper")
    await config_map("orphan", keeper)
    await core.delete_namespaced_config_map("keeper", namespace, propagation_policy="Orphan")
    assert await names() == {"released", "unrelated", "orphan"}


async def test_missing_objects_and_urls_are_404_not_found_statuses(api: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as exc:
        await apps_api(api).read_namespaced_deployment("nope", namespace)
    assert exc.value.status == 404
    assert status_of(exc.value)["reason"] == "NotFound"

    with pytest.raises(ApiException) as exc:
        await batch_api(api).delete_namespaced_job("nope", namespace)
    assert exc.value.status == 404

    assert (await core_api(api).list_namespaced_pod(namespace)).items == []


async def test_controller_completes_a_rollout_and_watchers_see_it(api: Any, namespace: str) -> None:
    apps = apps_api(api)
    created = await apps.create_namespaced_deployment(namespace, deployment("web", replicas=3))

    seen: list[tuple[str, Any]] = []
    async with watch.Watch() as stream:
        async for event in stream.stream(
            apps.list_namespaced_deployment,
            namespace,
            resource_version=created.metadata.resource_version,
            timeout_seconds=5,
        ):
            seen.append((event["type"], event["object"]))
            status = event["object"].status
            if status and status.observed_generation == 1 and status.available_replicas == 3:
                break

    kind, obj = seen[-1]
    assert kind == "MODIFIED"
    assert obj.status.ready_replicas == obj.status.updated_replicas == obj.status.replicas == 3
    conditions = {c.type: (c.status, c.reason) for c in obj.status.conditions}
    assert conditions == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }


async def test_a_rollout_replaces_its_own_pods_and_no_one_elses(api: Any, namespace: str) -> None:
    apps, core = apps_api(api), core_api(api)

    async def pods_of(app: str) -> set[str]:
        pods = await core.list_namespaced_pod(namespace, label_selector=f"app={app}")
        return {p.metadata.name for p in pods.items}

    async def two_pods(app: str, not_in: frozenset[str] = frozenset()) -> set[str] | None:
        names = await pods_of(app)
        return names if len(names) == 2 and not names & not_in else None

    for name in ("web", "api"):
        await apps.create_namespaced_deployment(namespace, deployment(name, replicas=2))
    first_web = await eventually(lambda: two_pods("web"), what="web's first pods")
    api_pods = await eventually(lambda: two_pods("api"), what="api's pods")

    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.example/web:2"}]}}}
    }
    await apps.patch_namespaced_deployment("web", namespace, patch, _content_type=MERGE)
    await eventually(lambda: two_pods("web", frozenset(first_web)), what="web's pods replaced")
    assert await pods_of("api") == api_pods  # the other Deployment's Pods were left alone


async def test_paused_controller_leaves_the_rollout_progressing(
    cluster: SandboxCluster, api: Any, namespace: str
) -> None:
    apps = apps_api(api)
    async with aiohttp.ClientSession(cluster.url) as http:
        async with http.post("/_sandbox/pause-controller") as response:
            assert response.status == 200
            assert (await response.json())["paused"] is True
        skipped = cluster.controller_skipped
        await apps.create_namespaced_deployment(namespace, deployment("web"))

        # The controller woke to the new Deployment and left it alone: the pause held.
        async def passed_over() -> bool:
            return cluster.controller_skipped > skipped

        await eventually(passed_over, timeout=30, interval=0.01, what="the paused controller passing over")
        assert (await apps.read_namespaced_deployment("web", namespace)).status.observed_generation is None

        async with http.post("/_sandbox/resume-controller") as response:
            assert (await response.json())["paused"] is False

    async def available() -> bool:
        status = (await apps.read_namespaced_deployment_status("web", namespace)).status
        return bool(status.observed_generation == 1 and status.available_replicas == 2)

    await eventually(available, timeout=30, interval=0.01, what="the rollout available")


async def test_failure_rule_yields_an_image_pull_backoff_pod(
    cluster: SandboxCluster, api: Any, namespace: str
) -> None:
    apps, core = apps_api(api), core_api(api)
    async with aiohttp.ClientSession(cluster.url) as http:
        rule = {"image_contains": "/broken:", "reason": "ImagePullBackOff", "message": "pull access denied"}
        async with http.post("/_sandbox/failure-rules", json=rule) as response:
            assert response.status == 201
        await apps.create_namespaced_deployment(namespace, deployment("web", "registry.example/broken:1"))

        async def observed() -> bool:
            status = (await apps.read_namespaced_deployment("web", namespace)).status
            return bool(status.observed_generation == 1)

        await eventually(observed, timeout=30, interval=0.01, what="the change observed")
        status = (await apps.read_namespaced_deployment("web", namespace)).status
        assert not status.available_replicas
        assert status.unavailable_replicas == 2
        progressing = next(c for c in status.conditions if c.type == "Progressing")
        assert (progressing.status, progressing.reason) == ("True", "ReplicaSetUpdated")

        pods = (await core.list_namespaced_pod(namespace, label_selector="app=web")).items
        assert len(pods) == 2
        waiting = pods[0].status.container_statuses[0].state.waiting
        assert (waiting.reason, waiting.message) == ("ImagePullBackOff", "pull access denied")
        assert (await core.list_namespaced_pod(namespace, label_selector="app=other")).items == []

        # Fixing the registry heals the rollout, as the kubelet's retries would.
        async with http.delete("/_sandbox/failure-rules") as response:
            assert response.status == 200

    async def healed() -> bool:
        healthy = (await apps.read_namespaced_deployment("web", namespace)).status.available_replicas == 2
        pods = (await core.list_namespaced_pod(namespace)).items
        # The failing pods are replaced by running ones, which report the image they run.
        running = [p for p in pods if p.status.phase == "Running" and p.status.container_statuses[0].ready]
        return healthy and len(running) == len(pods) == 2

    await eventually(healed, timeout=30, interval=0.01, what="the pods healed")


async def test_jobs_complete_or_fail_by_rule(cluster: SandboxCluster, api: Any, namespace: str) -> None:
    batch = batch_api(api)
    cluster.add_failure_rule("crashy", "CrashLoopBackOff")
    await batch.create_namespaced_job(namespace, job("ok"))
    await batch.create_namespaced_job(namespace, job("bad", "registry.example/crashy:1"))

    def finished(conditions: Any) -> bool:
        return any(c.type in ("Complete", "Failed") and c.status == "True" for c in conditions or [])

    async def both_finished() -> bool:
        jobs = (await batch.list_namespaced_job(namespace)).items
        return len(jobs) == 2 and all(finished(j.status.conditions) for j in jobs)

    await eventually(both_finished, timeout=30, interval=0.01, what="both Jobs finished")
    ok = await batch.read_namespaced_job_status("ok", namespace)
    assert ok.status.succeeded == 1
    assert [(c.type, c.status) for c in ok.status.conditions] == [("Complete", "True")]
    bad = await batch.read_namespaced_job_status("bad", namespace)
    assert [(c.type, c.reason) for c in bad.status.conditions] == [("Failed", "CrashLoopBackOff")]
    pods = (await core_api(api).list_namespaced_pod(namespace, label_selector="job-name=bad")).items
    assert pods[0].status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"


async def test_writes_log_records_the_deployment_id(
    cluster: SandboxCluster, api: Any, namespace: str
) -> None:
    apps = apps_api(api)
    await apps.create_namespaced_deployment(namespace, deployment("web", deployment_id="dep-1"))
    annotate = {"metadata": {"annotations": {DEPLOYMENT_ID_ANNOTATION: "dep-2"}}}
    await apps.patch_namespaced_deployment("web", namespace, annotate, _content_type=MERGE)
    await apps.read_namespaced_deployment("web", namespace)  # reads are not logged

    async with aiohttp.ClientSession(cluster.url) as http, http.get("/_sandbox/writes") as response:
        logged = await response.json()

    ours = [entry for entry in logged if entry["resource"] == "deployments"]
    assert [(e["method"], e["namespace"], e["name"], e["deployment_id"], e["status"]) for e in ours] == [
        ("POST", namespace, "web", "dep-1", 201),
        ("PATCH", namespace, "web", "dep-2", 200),
    ]
    assert [w.deployment_id for w in cluster.writes if w.resource == "deployments"] == ["dep-1", "dep-2"]
    assert [w.deployment_id for w in cluster.writes].count("dep-1") == 1


async def test_selectors_and_watch_timeouts_are_honoured(api: Any, namespace: str) -> None:
    apps = apps_api(api)
    for name, tier in (("web", "front"), ("api", "back"), ("db", "back")):
        body = deployment(name)
        body["metadata"]["labels"]["tier"] = tier
        await apps.create_namespaced_deployment(namespace, body)

    back = await apps.list_namespaced_deployment(namespace, label_selector="tier in (back),app!=db")
    assert [d.metadata.name for d in back.items] == ["api"]
    named = await apps.list_namespaced_deployment(namespace, field_selector="metadata.name=db")
    assert [d.metadata.name for d in named.items] == ["db"]
    for selector in ("metadata.name=nothing", "metadata.name=db,metadata.name=api"):
        none = await apps.list_namespaced_deployment(namespace, field_selector=selector)
        assert none.items == [], selector
    named_back = await apps.list_namespaced_deployment(
        namespace, field_selector="metadata.name=web", label_selector="tier=back"
    )
    assert named_back.items == []

    # The stream ends (rather than hanging until the test's timeout) because timeout_seconds is honoured.
    async with watch.Watch() as stream:
        names = [
            event["object"].metadata.name
            async for event in stream.stream(
                apps.list_namespaced_deployment, namespace, label_selector="tier=back", timeout_seconds=1
            )
        ]
    assert {"api", "db"} <= set(names)
    assert "web" not in names


async def test_kubeconfig_is_accepted_by_kubernetes_asyncio(cluster: SandboxCluster, tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kube" / "config", cluster.url, namespace="default")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == cluster.url

    async with client.ApiClient(configuration) as api_client:
        names = {ns.metadata.name for ns in (await core_api(api_client).list_namespace()).items}
    assert "default" in names
    assert (path.stat().st_mode & 0o777) == 0o600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_cli(port: int, *args: str) -> asyncio.subprocess.Process:
    """`python -m libs.devstack.sandbox --port PORT ARGS...`, as `make up` runs it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "libs.devstack.sandbox",
        "--port",
        str(port),
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def listening_cli(port: int, *args: str) -> asyncio.subprocess.Process:
    """`start_cli`, once it says it is listening."""
    process = await start_cli(port, *args)
    assert process.stdout is not None
    while b"listening on" not in await asyncio.wait_for(process.stdout.readline(), timeout=30):
        pass
    return process


async def create_web_in_shop(http: aiohttp.ClientSession) -> None:
    """The namespace `shop` and its Deployment `web` (deployment id `dep_1`)."""
    async with http.post("/api/v1/namespaces", json={"metadata": {"name": "shop"}}) as r:
        assert r.status == 201, await r.text()
    async with http.post(
        "/apis/apps/v1/namespaces/shop/deployments", json=deployment("web", deployment_id="dep_1")
    ) as r:
        assert r.status == 201, await r.text()


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    process = await start_cli(port, "--kubeconfig", str(kubeconfig))
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode().strip()
        url = f"http://127.0.0.1:{port}"
        assert line == f"sandbox Kubernetes API listening on {url}"
        assert url in kubeconfig.read_text()

        async with aiohttp.ClientSession(url) as http:
            async with http.get("/version") as response:
                assert response.status == 200
                assert (await response.json())["major"] == "1"
            async with http.post(
                "/_sandbox/failure-rules", json={"image_contains": "x", "reason": "ErrImagePull"}
            ) as r:
                assert r.status == 201

        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_with_state_keeps_its_objects_across_a_restart(tmp_path: Path) -> None:
    """`make up` runs the sandbox with --state: a restart finds the data plane as it was."""
    state = tmp_path / "sandbox" / "objects.json"

    async def start() -> tuple[asyncio.subprocess.Process, str]:
        port = free_port()
        return await listening_cli(port, "--state", str(state)), f"http://127.0.0.1:{port}"

    async def stop(process: asyncio.subprocess.Process) -> None:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
        assert process.returncode == 0, stderr.decode()

    path = "/apis/apps/v1/namespaces/shop/deployments/web"
    process, url = await start()
    try:
        async with aiohttp.ClientSession(url) as http:
            await create_web_in_shop(http)

            async def available() -> bool:
                async with http.get(path) as r:
                    return bool(((await r.json()).get("status") or {}).get("availableReplicas"))

            await eventually(available, timeout=30, interval=0.01, what="the rollout available")
            async with http.get(path) as r:
                before = await r.json()
    finally:
        await stop(process)
    assert state.exists()

    process, url = await start()
    try:
        async with aiohttp.ClientSession(url) as http:
            async with http.get(path) as r:
                assert r.status == 200
                after = await r.json()
            assert after["metadata"]["uid"] == before["metadata"]["uid"]
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
            assert after["metadata"]["annotations"][DEPLOYMENT_ID_ANNOTATION] == "dep_1"
            assert after["status"] == before["status"]
            # New writes continue the resourceVersion sequence.
            async with http.post("/api/v1/namespaces", json={"metadata": {"name": "other"}}) as r:
                created = await r.json()
            assert int(created["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    finally:
        await stop(process)


def annotate(http: aiohttp.ClientSession, deployment_id: str) -> Any:
    """A merge patch of the `web` Deployment in `shop` to another deployment id."""
    return http.patch(
        "/apis/apps/v1/namespaces/shop/deployments/web",
        data=json.dumps({"metadata": {"annotations": {DEPLOYMENT_ID_ANNOTATION: deployment_id}}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )


async def test_cli_with_state_loses_no_answered_write_to_a_sigkill(tmp_path: Path) -> None:
    """The chaos run kills the sandbox: what it answered 2xx is there after, and so is its write log."""
    state = tmp_path / "sandbox" / "objects.json"
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def start() -> asyncio.subprocess.Process:
        return await listening_cli(port, "--state", str(state), "--save-seconds", "3600")

    process = await start()
    try:
        async with aiohttp.ClientSession(url) as http:
            await create_web_in_shop(http)
            async with annotate(http, "dep_2") as r:
                assert r.status == 200, await r.text()
    finally:
        process.kill()  # no chance to save at exit: only what was saved as it was answered counts
        await process.wait()

    process = await start()
    try:
        async with aiohttp.ClientSession(url) as http:
            async with http.get("/apis/apps/v1/namespaces/shop/deployments/web") as r:
                assert r.status == 200
                assert (await r.json())["metadata"]["annotations"][DEPLOYMENT_ID_ANNOTATION] == "dep_2"
            async with http.get("/_sandbox/writes") as r:
                writes = await r.json()
            assert [(w["method"], w["resource"], w["deployment_id"]) for w in writes] == [
                ("POST", "namespaces", None),
                ("POST", "deployments", "dep_1"),
                ("PATCH", "deployments", "dep_2"),
            ]
            async with annotate(http, "dep_3") as r:
                assert r.status == 200
            async with http.get("/_sandbox/writes?since=3") as r:
                assert [w["seq"] for w in await r.json()] == [4]  # the log goes on where it stopped
    finally:
        process.kill()
        await process.wait()
