"""The agent against real NATS and the sandbox cluster: what lands in the data plane, and what it reports."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from libs.contracts.ids import new_id
from services.data_plane_agent.domain.identity import Identity
from services.data_plane_agent.domain.manifests import job_name
from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import ENV, NAMESPACE, ORG, PROJECT, seal
from tests.support import eventually

LABELS = {
    "app.kubernetes.io/managed-by": "landfall",
    "landfall.dev/org": ORG,
    "landfall.dev/project": PROJECT,
    "landfall.dev/environment": ENV,
}


def assert_landfall_object(obj: dict[str, Any] | None, component: str, deployment_id: str) -> dict[str, Any]:
    assert obj is not None
    meta = obj["metadata"]
    written_by = meta["annotations"]["landfall.dev/dataplane-id"]
    assert meta["labels"] == {
        **LABELS,
        "landfall.dev/component": component,
        "landfall.dev/dataplane": written_by,
    }
    assert meta["annotations"]["landfall.dev/deployment-id"] == deployment_id
    return obj


async def test_a_service_becomes_a_deployment_and_a_service(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        cmd = await h.deploy("api", env={"LOG_LEVEL": "debug"}, seq=3)

        final = await h.wait_report(cmd.deployment_id)
        assert final.status == "succeeded", final
        statuses = [r.status for r in h.reports_for(cmd.deployment_id)]
        assert statuses == ["progressing", "succeeded"]
        assert final.applied_at is not None
        assert final.dataplane_id == h.dp

        dep = assert_landfall_object(h.obj("apps/v1", "deployments", "api"), "api", cmd.deployment_id)
        assert dep["metadata"]["annotations"]["landfall.dev/deployment-seq"] == "3"
        spec = dep["spec"]
        assert spec["replicas"] == 1
        assert spec["progressDeadlineSeconds"] == 600
        assert spec["selector"]["matchLabels"] == {
            k: v for k, v in LABELS.items() if "managed-by" not in k
        } | {"landfall.dev/component": "api"}
        template = spec["template"]
        assert template["metadata"]["labels"] == {
            **LABELS,
            "landfall.dev/component": "api",
            "landfall.dev/dataplane": h.dp,
        }
        assert template["metadata"]["annotations"]["landfall.dev/deployment-id"] == cmd.deployment_id
        (container,) = template["spec"]["containers"]
        assert container["name"] == "api"
        assert container["image"] == cmd.image
        assert container["env"] == [{"name": "LOG_LEVEL", "value": "debug"}]
        assert container["ports"][0]["containerPort"] == 8080
        assert not template["spec"].get("imagePullSecrets")

        svc = assert_landfall_object(h.obj("v1", "services", "api"), "api", cmd.deployment_id)
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["selector"] == spec["selector"]["matchLabels"]
        assert svc["spec"]["ports"][0]["port"] == 8080
        assert svc["spec"]["ports"][0]["targetPort"] == 8080

        ns = h.cluster.get("v1", "namespaces", None, NAMESPACE)
        assert ns is not None
        assert ns["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "landfall"


async def test_a_web_application_gets_an_ingress_only_where_the_data_plane_has_a_class(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        with_class = h.command(
            "shop", component_type="web-application", ingress_class="nginx", ingress_host="shop.example.com"
        )
        without = h.command("admin", component_type="web-application")
        await h.send(with_class)
        await h.send(without)
        assert (await h.wait_report(with_class.deployment_id)).status == "succeeded"
        assert (await h.wait_report(without.deployment_id)).status == "succeeded"

        ing = assert_landfall_object(
            h.obj("networking.k8s.io/v1", "ingresses", "shop"), "shop", with_class.deployment_id
        )
        assert ing["spec"]["ingressClassName"] == "nginx"
        (rule,) = ing["spec"]["rules"]
        assert rule["host"] == "shop.example.com"
        (path,) = rule["http"]["paths"]
        assert path["path"] == "/"
        assert path["backend"]["service"] == {"name": "shop", "port": {"number": 8080}}
        assert h.obj("v1", "services", "shop") is not None
        assert h.obj("apps/v1", "deployments", "admin") is not None
        assert h.obj("networking.k8s.io/v1", "ingresses", "admin") is None


async def test_a_scheduled_task_becomes_a_cronjob(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        cmd = h.command(
            "nightly",
            component_type="scheduled-task",
            port=None,
            schedule="30 2 * * *",
            timezone="Europe/Paris",
        )
        await h.send(cmd)
        final = await h.wait_report(cmd.deployment_id)
        assert final.status == "succeeded", final

        cron = assert_landfall_object(h.obj("batch/v1", "cronjobs", "nightly"), "nightly", cmd.deployment_id)
        assert cron["spec"]["schedule"] == "30 2 * * *"
        assert cron["spec"]["timeZone"] == "Europe/Paris"
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]
        assert pod["metadata"]["labels"]["landfall.dev/component"] == "nightly"
        assert pod["spec"]["containers"][0]["image"] == cmd.image
        assert h.obj("apps/v1", "deployments", "nightly") is None


async def test_a_manual_task_stores_its_template_and_each_run_is_a_job_with_its_args(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        deploy = await h.deployed("migrate", component_type="manual-task", port=None, env={"DB": "main"})
        template = assert_landfall_object(
            h.obj("v1", "configmaps", "migrate-job-template"), "migrate", deploy.deployment_id
        )
        pod_spec = json.loads(template["data"]["pod-spec.json"])
        assert pod_spec["containers"][0]["image"] == deploy.image
        assert pod_spec["containers"][0]["env"] == [{"name": "DB", "value": "main"}]
        assert h.cluster.list_objects("batch/v1", "jobs", NAMESPACE) == []

        execution_id = new_id("exe")
        run = deploy.model_copy(update={"kind": "run", "execution_id": execution_id, "args": ["--to", "42"]})
        await h.send(run)
        final = await h.wait_report(deploy.deployment_id, execution_id=execution_id)
        assert final.status == "succeeded", final
        assert final.kind == "run"
        assert final.execution_id == execution_id
        assert [r.status for r in h.reports_for(deploy.deployment_id, execution_id)] == [
            "progressing",
            "succeeded",
        ]

        job = assert_landfall_object(
            h.obj("batch/v1", "jobs", job_name("migrate", execution_id)), "migrate", deploy.deployment_id
        )
        assert job["metadata"]["name"] == f"migrate-{execution_id[-8:]}"
        assert job["metadata"]["annotations"]["landfall.dev/execution-id"] == execution_id
        assert job["spec"]["backoffLimit"] == 0
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["--to", "42"]
        assert container["image"] == deploy.image

        # Another run of the same deployment is its own Job, with its own reports.
        again = run.model_copy(update={"execution_id": new_id("exe"), "args": []})
        await h.send(again)
        second = await h.wait_report(deploy.deployment_id, execution_id=again.execution_id)
        assert second.status == "succeeded"
        assert len(h.cluster.list_objects("batch/v1", "jobs", NAMESPACE)) == 2


async def test_a_run_whose_image_cannot_be_pulled_fails_with_the_reason(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        h.cluster.add_failure_rule("missing-image", "ErrImagePull")
        execution_id = new_id("exe")
        run = h.command(
            "report",
            component_type="manual-task",
            port=None,
            kind="run",
            execution_id=execution_id,
            image="registry.example.com/acme/missing-image:1",
        )
        await h.send(run)
        final = await h.wait_report(run.deployment_id, {"succeeded", "failed"}, execution_id=execution_id)
        assert final.status == "failed"
        assert final.reason == "ErrImagePull"
        assert "missing-image" in (final.message or "")


async def test_a_private_registry_gets_a_pull_secret_only_this_agent_could_open(
    open_harness: OpenHarness, caplog: object
) -> None:
    password = "pw-" + new_id("tok")
    dockerconfig = json.dumps(
        {"auths": {"registry.example.com": {"auth": base64.b64encode(f"ci:{password}".encode()).decode()}}}
    ).encode()
    async with open_harness() as h:
        cmd = await h.deployed("api", pull_secret=seal(dockerconfig, h.identity.public_key))

        secret = assert_landfall_object(h.obj("v1", "secrets", "api-pull"), "api", cmd.deployment_id)
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        assert base64.b64decode(secret["data"][".dockerconfigjson"]) == dockerconfig
        dep = h.obj("apps/v1", "deployments", "api")
        assert dep is not None
        assert dep["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "api-pull"}]

        # Sealed to another key (say, before the data plane was enrolled again): refused, nothing written.
        other = h.command(
            "api", seq=2, pull_secret=seal(dockerconfig, bytes(Identity.generate(h.dp).public_key))
        )
        await h.send(other)
        refused = await h.wait_report(other.deployment_id)
        assert refused.status == "failed"
        assert refused.reason == "pull_secret_wrong_recipient"
        assert not [w for w in h.cluster.writes if w.deployment_id == other.deployment_id]

        # The registry became anonymous: the reference goes, and so does the stored credential.
        await h.deployed("api", seq=3)
        dep = h.obj("apps/v1", "deployments", "api")
        assert dep is not None
        assert not dep["spec"]["template"]["spec"].get("imagePullSecrets")
        assert h.obj("v1", "secrets", "api-pull") is None

    assert password not in caplog.text  # type: ignore[attr-defined]


async def test_a_redelivered_command_writes_nothing(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        cmd = await h.deployed("api")
        h.cluster.clear_writes()

        await h.send(cmd, msg_id="the-orchestrator-sent-it-again")
        marker = h.command("other")  # commands are handled in order: once this is done, so is the repeat
        await h.send(marker)
        assert (await h.wait_report(marker.deployment_id)).status == "succeeded"

        assert [w for w in h.cluster.writes if w.name == "api" or w.deployment_id == cmd.deployment_id] == []
        assert [r.status for r in h.reports_for(cmd.deployment_id)] == ["progressing", "succeeded"]


async def test_an_older_deploy_arriving_after_a_newer_one_is_superseded_and_not_applied(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        newer = h.command("api", seq=5, image="registry.example.com/acme/api:5")
        older = h.command("api", seq=4, image="registry.example.com/acme/api:4")
        await h.send(newer)
        assert (await h.wait_report(newer.deployment_id)).status == "succeeded"
        await h.send(older)

        report = await h.wait_report(older.deployment_id)
        assert report.status == "superseded"
        assert [w for w in h.cluster.writes if w.deployment_id == older.deployment_id] == []
        assert h.image_of("api").endswith("api:5")


async def test_commands_sent_while_the_agent_was_away_are_applied_in_order(open_harness: OpenHarness) -> None:
    async with open_harness(start=False) as h:
        first = h.command("api", seq=1, image="registry.example.com/acme/api:1")
        second = h.command("api", seq=2, image="registry.example.com/acme/api:2")
        await h.send(first)
        await h.send(second)
        assert h.cluster.writes == []

        await h.start_agent()
        assert (await h.wait_report(second.deployment_id)).status == "succeeded"
        assert (await h.wait_report(first.deployment_id)).status in {"succeeded", "superseded"}

        order = [
            w.deployment_id for w in h.cluster.writes if w.resource == "deployments" and w.subresource is None
        ]
        assert order == [first.deployment_id, second.deployment_id]
        assert h.image_of("api").endswith("api:2")


async def test_a_newer_deploy_supersedes_a_rollout_still_in_progress(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        h.cluster.pause_controller()
        first = await h.deploy("api", seq=1, image="registry.example.com/acme/api:1")
        await h.wait_report(first.deployment_id, "progressing")

        second = await h.deploy("api", seq=2, image="registry.example.com/acme/api:2")
        replaced = await h.wait_report(first.deployment_id)
        assert replaced.status == "superseded"
        assert second.deployment_id in (replaced.message or "")

        h.cluster.resume_controller()
        assert (await h.wait_report(second.deployment_id)).status == "succeeded"


async def test_a_restarted_agent_reports_the_rollouts_it_left_unfinished(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        h.cluster.pause_controller()
        cmd = await h.deploy("api")
        await h.wait_report(cmd.deployment_id, "progressing")
        await h.stop_agent()

        h.cluster.resume_controller()  # the rollout completes while no agent watches
        await h.start_agent()
        assert (await h.wait_report(cmd.deployment_id)).status == "succeeded"


async def test_a_namespace_deleted_behind_the_agent_s_back_is_made_again(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        await h.deployed("api", seq=1)
        url = f"{h.cluster.url}/api/v1/namespaces/{NAMESPACE}"
        async with aiohttp.ClientSession() as http, http.delete(url) as resp:
            assert resp.status == 200
        assert h.obj("apps/v1", "deployments", "api") is None

        await h.deployed("api", seq=2)
        assert h.obj("apps/v1", "deployments", "api") is not None


async def test_a_redeploy_recreates_what_was_deleted_and_adds_a_new_pull_secret(
    open_harness: OpenHarness,
) -> None:
    """The objects next to the Deployment are written together; each is still created if missing."""
    async with open_harness() as h:
        await h.deployed("api", seq=1)
        assert h.obj("v1", "secrets", "api-pull") is None
        url = f"{h.cluster.url}/api/v1/namespaces/{NAMESPACE}/services/api"
        async with aiohttp.ClientSession() as http, http.delete(url) as resp:
            assert resp.status == 200

        dockerconfig = json.dumps({"auths": {"registry.example.com": {"auth": "Y2k6cHc="}}}).encode()
        second = await h.deployed("api", seq=2, pull_secret=seal(dockerconfig, h.identity.public_key))
        assert_landfall_object(h.obj("v1", "services", "api"), "api", second.deployment_id)
        assert_landfall_object(h.obj("v1", "secrets", "api-pull"), "api", second.deployment_id)
        dep = assert_landfall_object(h.obj("apps/v1", "deployments", "api"), "api", second.deployment_id)
        assert dep["metadata"]["annotations"]["landfall.dev/deployment-seq"] == "2"


async def test_a_deleted_component_is_removed_and_a_late_older_deploy_does_not_bring_it_back(
    open_harness: OpenHarness,
) -> None:
    dockerconfig = json.dumps({"auths": {"registry.example.com": {"auth": "Y2k6cHc="}}}).encode()
    async with open_harness() as h:
        api = h.command("api", seq=10, pull_secret=seal(dockerconfig, h.identity.public_key))
        web = h.command("web", seq=11)  # another component in the same namespace
        for cmd in (api, web):
            await h.send(cmd)
            assert (await h.wait_report(cmd.deployment_id)).status == "succeeded"
        for plural, name in (("deployments", "api"), ("services", "api"), ("secrets", "api-pull")):
            assert h.obj("apps/v1" if plural == "deployments" else "v1", plural, name) is not None

        await h.send_removal(h.removal("api", seq=20))

        async def removed() -> bool:
            return gone()

        def gone() -> bool:
            return all(
                h.obj(version, plural, name) is None
                for version, plural, name in (
                    ("apps/v1", "deployments", "api"),
                    ("v1", "services", "api"),
                    ("v1", "secrets", "api-pull"),
                )
            )

        await eventually(removed, what="api's Deployment, Service and pull Secret deleted")
        assert h.obj("apps/v1", "deployments", "web") is not None  # the neighbour stays
        assert h.obj("v1", "services", "web") is not None
        assert h.cluster.get("v1", "namespaces", None, NAMESPACE) is not None

        # A deploy dispatched just before the deletion, arriving after it: refused, nothing comes back.
        stale = await h.deploy("api", seq=15)
        assert (await h.wait_report(stale.deployment_id)).status == "superseded"
        assert gone()

        # A component created again under the same name deploys as usual.
        again = await h.deployed("api", seq=21)
        assert_landfall_object(h.obj("apps/v1", "deployments", "api"), "api", again.deployment_id)
