"""Nothing trusts more than it must: the agent against forged commands and objects it did not write.

Each test reads the sandbox's whole state (`save_state`) before and after, so "nothing changed" is
checked on every object, not only on the ones the test thought of.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate  # type: ignore[import-untyped]

from libs.contracts.ids import new_id
from libs.contracts.messages import DeployCommand
from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import ENV, NAMESPACE, ORG, PROJECT, Harness, seal

KUBE_SYSTEM = "kube-system"
COMPONENT_LABELS = {
    "app.kubernetes.io/managed-by": "landfall",
    "landfall.dev/org": ORG,
    "landfall.dev/project": PROJECT,
    "landfall.dev/environment": ENV,
    "landfall.dev/component": "api",
}


def by_hand(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment someone made with kubectl: another image, its own service account."""
    pod_labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": "operator",
                    "containers": [{"name": name, "image": "registry.example.com/ops/operator:1"}],
                },
            },
        },
    }


async def create(h: Harness, obj: dict[str, Any]) -> None:
    group = obj["apiVersion"]
    prefix = "/api/v1" if group == "v1" else f"/apis/{group}"
    plural = {"Deployment": "deployments", "CronJob": "cronjobs", "Service": "services"}.get(obj["kind"])
    where = f"/namespaces/{obj['metadata']['namespace']}/{plural}" if plural else "/namespaces"
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{h.cluster.url}{prefix}{where}", json=obj) as resp,
    ):
        assert resp.status == 201, await resp.text()


def snapshot(h: Harness, path: Path) -> list[dict[str, Any]]:
    """Every object in the sandbox, as stored."""
    h.cluster.save_state(path)
    return [entry["object"] for entry in json.loads(path.read_text())["objects"]]


async def assert_rejected(h: Harness, cmd: DeployCommand, names: str, tmp_path: Path) -> None:
    """`cmd` is reported failed/command_rejected naming `names`, and the sandbox did not change."""
    before = snapshot(h, tmp_path / "before.json")
    await h.send(cmd)
    report = await h.wait_report(cmd.deployment_id)
    assert (report.status, report.reason) == ("failed", "command_rejected")
    assert names in (report.message or "")
    assert report.dataplane_id == h.dp
    assert snapshot(h, tmp_path / "after.json") == before
    assert not [w for w in h.cluster.writes if w.deployment_id == cmd.deployment_id]


async def deploy_web(h: Harness) -> None:
    """Another component, so that the namespace exists (the agent made it) before the test's object."""
    await h.deployed("web")


async def test_a_command_naming_another_namespace_changes_nothing_and_is_rejected(
    open_harness: OpenHarness, tmp_path: Path
) -> None:
    async with open_harness() as h:
        cron = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "backup", "namespace": KUBE_SYSTEM},
            "spec": {
                "schedule": "0 3 * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "serviceAccountName": "cluster-admin-sa",
                                "restartPolicy": "Never",
                                "containers": [
                                    {"name": "backup", "image": "registry.example.com/ops/backup"}
                                ],
                            }
                        }
                    }
                },
            },
        }
        await create(h, cron)
        forged = h.command(
            "backup",
            namespace=KUBE_SYSTEM,
            component_type="scheduled-task",
            port=None,
            schedule="* * * * *",
            image="registry.example.com/evil/miner:1",
        )
        await assert_rejected(h, forged, KUBE_SYSTEM, tmp_path)
        # Another data plane's command on this one's subject is refused the same way.
        other = new_id("dp")
        await assert_rejected(h, h.command("api", dataplane_id=other), other, tmp_path)


async def test_an_object_of_the_component_s_name_made_by_hand_is_left_alone(
    open_harness: OpenHarness, tmp_path: Path
) -> None:
    async with open_harness() as h:
        await deploy_web(h)
        await create(h, by_hand("api", NAMESPACE))
        await assert_rejected(h, h.command("api"), f"Deployment {NAMESPACE}/api", tmp_path)


async def test_a_namespace_made_by_hand_under_the_landfall_name_gets_nothing(
    open_harness: OpenHarness, tmp_path: Path
) -> None:
    async with open_harness() as h:
        await create(h, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        await assert_rejected(h, h.command("api"), f"Namespace {NAMESPACE} exists", tmp_path)


async def test_a_secondary_object_made_by_hand_refuses_the_whole_command_before_any_write(
    open_harness: OpenHarness, tmp_path: Path
) -> None:
    """The Service is written before the Deployment: a hand-made Service must stop both."""
    async with open_harness() as h:
        await deploy_web(h)
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api", "namespace": NAMESPACE},
            "spec": {"selector": {"app": "ops"}, "ports": [{"port": 80}]},
        }
        await create(h, service)
        cmd = h.command("api", pull_secret=seal(b'{"auths":{}}', h.identity.public_key))
        await assert_rejected(h, cmd, f"Service {NAMESPACE}/api", tmp_path)
        assert h.obj("apps/v1", "deployments", "api") is None
        assert h.obj("v1", "secrets", "api-pull") is None


async def test_a_removal_deletes_nothing_without_this_data_plane_s_labels(
    open_harness: OpenHarness, tmp_path: Path
) -> None:
    async with open_harness() as h:
        await deploy_web(h)
        # Landfall's component labels, copied by hand, but not this data plane's label.
        await create(h, by_hand("api", NAMESPACE, labels=COMPONENT_LABELS))
        await create(h, by_hand("api-worker", NAMESPACE))  # no labels at all
        await h.send_removal(h.removal("api", seq=5))
        marker = h.command("marker")  # commands are handled in order: once this is done, so is the removal
        await h.send(marker)
        assert (await h.wait_report(marker.deployment_id)).status == "succeeded"

        assert h.obj("apps/v1", "deployments", "api") is not None
        assert h.obj("apps/v1", "deployments", "api-worker") is not None
        assert h.obj("v1", "configmaps", "api-removed") is not None  # the tombstone is Landfall's own

        # A removal naming kube-system is refused before anything is read or written.
        before = snapshot(h, tmp_path / "before.json")
        await h.send_removal(h.removal("api", seq=6, namespace=KUBE_SYSTEM))
        await h.deployed("last", seq=2)
        after = [o for o in snapshot(h, tmp_path / "after.json") if "last" not in json.dumps(o)]
        assert [o for o in after if o["metadata"].get("namespace") == KUBE_SYSTEM] == [
            o for o in before if o["metadata"].get("namespace") == KUBE_SYSTEM
        ]


def _stored(obj: dict[str, Any] | None) -> dict[str, Any]:
    """What the sandbox stored, without the status it simulates (validated as the object written)."""
    assert obj is not None
    found = copy.deepcopy(obj)
    found.pop("status", None)
    return found


async def test_what_lands_runs_restricted_in_a_restricted_namespace_and_validates_against_1_33(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        dockerconfig = b'{"auths":{"registry.example.com":{"auth":"Y2k6cHc="}}}'
        cmds = [
            h.command("api", pull_secret=seal(dockerconfig, h.identity.public_key)),
            h.command("shop", component_type="web-application", ingress_class="nginx"),
            h.command("nightly", component_type="scheduled-task", port=None, schedule="0 2 * * *"),
            h.command("migrate", component_type="manual-task", port=None),
        ]
        for cmd in cmds:
            await h.send(cmd)
            assert (await h.wait_report(cmd.deployment_id)).status == "succeeded"
        run = cmds[-1].model_copy(update={"kind": "run", "execution_id": new_id("exe")})
        await h.send(run)
        assert (await h.wait_report(run.deployment_id, execution_id=run.execution_id)).status == "succeeded"

        ns = _stored(h.cluster.get("v1", "namespaces", None, NAMESPACE))
        labels = ns["metadata"]["labels"]
        for mode in ("enforce", "warn", "audit"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
            assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"
        assert labels["landfall.dev/dataplane"] == h.dp

        stored = [ns]
        for version, plural in (
            ("apps/v1", "deployments"),
            ("batch/v1", "cronjobs"),
            ("batch/v1", "jobs"),
            ("v1", "services"),
            ("v1", "secrets"),
            ("v1", "configmaps"),
            ("networking.k8s.io/v1", "ingresses"),
        ):
            stored += [_stored(o) for o in h.cluster.list_objects(version, plural, NAMESPACE)]
        pods = []
        for obj in stored:
            assert obj["metadata"]["labels"]["landfall.dev/dataplane"] == h.dp, obj["metadata"]["name"]
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "landfall"
            kubernetes_validate.validate(obj, "1.33", strict=True)
            spec = obj.get("spec") or {}
            template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
            if template is not None:
                pods.append(template["spec"])
        assert len(pods) == 4  # two Deployments, a CronJob, a Job
        for pod in pods:
            assert pod["securityContext"] == {
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            }
            assert pod["automountServiceAccountToken"] is False
            for container in pod["containers"]:
                assert container["securityContext"] == {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                }


async def test_in_a_pod_the_agent_binds_itself_to_read_secrets_in_each_namespace_it_makes(
    open_harness: OpenHarness,
) -> None:
    service_account = {
        "kube_service_account": "landfall-agent",
        "kube_service_account_namespace": "landfall-system",
    }
    async with open_harness(**service_account) as h:
        await h.deployed("api", pull_secret=seal(b'{"auths":{}}', h.identity.public_key))

        binding = _stored(
            h.cluster.get("rbac.authorization.k8s.io/v1", "rolebindings", NAMESPACE, "landfall-agent-secrets")
        )
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "landfall-agent-secrets",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "landfall-agent", "namespace": "landfall-system"}
        ]
        assert binding["metadata"]["labels"]["landfall.dev/dataplane"] == h.dp
        kubernetes_validate.validate(binding, "1.33", strict=True)
