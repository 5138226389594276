"""What an environment's config makes of the agent's objects (`domain/workload.py`, `domain/manifests.py`),
every shape validated against the Kubernetes 1.33 schemas."""

from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from nacl.public import PublicKey, SealedBox

from libs.contracts import reasons
from libs.contracts.config import WorkloadConfig
from libs.contracts.messages import SealedValues
from services.data_plane_agent.domain import manifests, rollout, workload
from services.data_plane_agent.domain.identity import Identity, SealedSecretError
from tests.unit.test_agent_manifests import COMPONENT_TYPES, DP, command

SECRETS = SealedValues(recipient_key_id="0" * 16, ciphertext="AAAA")
PARTS: dict[str, dict[str, Any]] = {
    "replicas": {"replicas": 3},
    "resources": {"resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}},
    "env": {"env": {"MODE": "prod"}},
    "autoscaling": {"autoscaling": {"min_replicas": 2, "max_replicas": 5, "target_cpu_percent": 70}},
    "probes": {
        "probes": {
            "readiness": {"path": "/ready", "period_seconds": 5},
            "liveness": {"path": "/live", "port": 9000},
        }
    },
    "ingress": {"ingress": {"host": "shop.example.com", "path": "/api", "tls_secret": "shop-tls"}},
}
TASK_PARTS = ("resources", "env")


def configured(config: dict[str, Any] | None, *, secrets: bool = False, **overrides: Any) -> Any:
    return command(
        config=WorkloadConfig.model_validate(config) if config is not None else None,
        config_version=4 if config is not None else None,
        secrets=SECRETS if secrets else None,
        secret_names=["TOKEN"] if secrets else [],
        **overrides,
    )


def by_kind(objs: list[manifests.Obj]) -> dict[str, dict[str, Any]]:
    return {o.kind: o.body for o in objs}


def the_container(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    template = spec.get("template") or spec["jobTemplate"]["spec"]["template"]
    containers: list[dict[str, Any]] = template["spec"]["containers"]
    return containers[0]


def test_no_config_gives_exactly_the_objects_of_before() -> None:
    for overrides, _ in COMPONENT_TYPES:
        before = manifests.plan(command(**overrides), DP, dockerconfigjson=None)
        assert all("envFrom" not in json.dumps(o.body) for o in before)
        assert all(workload.ANNOTATION_CONFIG_VERSION not in json.dumps(o.body) for o in before)
    dep = by_kind(manifests.plan(command(), DP, dockerconfigjson=None))["Deployment"]
    assert dep["spec"]["replicas"] == 1
    assert set(the_container(dep)) == {"name", "image", "env", "args", "ports", "securityContext"}


def test_a_service_gets_replicas_resources_probes_and_the_config_version() -> None:
    config = {**PARTS["replicas"], **PARTS["resources"], **PARTS["probes"]}
    dep = by_kind(manifests.plan(configured(config), DP, dockerconfigjson=None))["Deployment"]
    assert dep["spec"]["replicas"] == 3
    box = the_container(dep)
    assert box["resources"] == {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}
    assert box["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
        "periodSeconds": 5,
    }
    assert box["livenessProbe"] == {"httpGet": {"path": "/live", "port": 9000, "scheme": "HTTP"}}
    assert box["envFrom"] == []
    notes = dep["spec"]["template"]["metadata"]["annotations"]
    assert notes[workload.ANNOTATION_CONFIG_VERSION] == "4"


def test_autoscaling_leaves_replicas_to_an_hpa_of_the_components_name() -> None:
    objs = manifests.plan(configured({**PARTS["autoscaling"], "replicas": 3}), DP, dockerconfigjson=None)
    assert [o.kind for o in objs] == ["Service", "HorizontalPodAutoscaler", "Deployment"]
    found = by_kind(objs)
    assert "replicas" not in found["Deployment"]["spec"]  # left out, not nulled: the HPA's choice stays
    assert workload.was_autoscaled(found["Deployment"])
    plain = by_kind(manifests.plan(configured({"replicas": 2}), DP, dockerconfigjson=None))["Deployment"]
    assert plain["metadata"]["annotations"][workload.ANNOTATION_AUTOSCALED] is None  # a patch deletes it
    hpa = found["HorizontalPodAutoscaler"]
    assert hpa["metadata"]["name"] == "api"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_a_probe_without_any_port_is_left_out() -> None:
    dep = by_kind(manifests.plan(configured(PARTS["probes"], port=None), DP, dockerconfigjson=None))
    box = the_container(dep["Deployment"])
    assert "readinessProbe" not in box
    assert box["livenessProbe"]["httpGet"]["port"] == 9000


def test_secrets_are_an_opaque_secret_read_through_env_from() -> None:
    cmd = configured({}, secrets=True)
    objs = manifests.plan(
        cmd, DP, dockerconfigjson=None, secrets={"TOKEN": "s3cret"}, secret_keys_now=["OLD"]
    )
    assert [o.kind for o in objs] == ["Secret", "Service", "Deployment"]
    secret = objs[0].body
    assert secret["metadata"]["name"] == "api-env"
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "landfall"
    assert secret["metadata"]["labels"]["landfall.dev/dataplane"] == DP
    assert secret["data"] == {"TOKEN": base64.b64encode(b"s3cret").decode(), "OLD": None}
    assert the_container(objs[-1].body)["envFrom"] == [{"secretRef": {"name": "api-env"}}]
    assert workload.refers_to_env_secret(objs[-1].body, "api")
    assert "s3cret" not in json.dumps(objs[-1].body)


def test_a_web_applications_ingress_gets_host_path_and_tls() -> None:
    cmd = configured(PARTS["ingress"], component_type="web-application", ingress_class="nginx")
    ing = by_kind(manifests.plan(cmd, DP, dockerconfigjson=None))["Ingress"]
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "shop.example.com"
    assert rule["http"]["paths"][0]["path"] == "/api"
    assert ing["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    assert workload.unapplied(cmd) is None
    plain = configured({}, component_type="web-application", ingress_class="nginx")
    assert by_kind(manifests.plan(plain, DP, dockerconfigjson=None))["Ingress"]["spec"]["tls"] == []


def test_an_ingress_config_without_an_ingress_class_is_said_not_applied() -> None:
    cmd = configured(PARTS["ingress"], component_type="web-application")
    assert "Ingress" not in by_kind(manifests.plan(cmd, DP, dockerconfigjson=None))
    assert "no ingress class" in (workload.unapplied(cmd) or "")


TASKS = [
    {"component_type": "scheduled-task", "schedule": "0 * * * *"},
    {"component_type": "manual-task", "kind": "run", "execution_id": "exe_01jabcdefghjkmnpqrstvwxyz2"},
]


@pytest.mark.parametrize("overrides", TASKS, ids=["cronjob", "job"])
def test_tasks_get_resources_env_and_secrets_in_their_pod_template(overrides: dict[str, Any]) -> None:
    cmd = configured({**PARTS["resources"]}, secrets=True, env={"MODE": "batch"}, **overrides)
    *_, primary = manifests.plan(cmd, DP, dockerconfigjson=None, secrets={"TOKEN": "x"})
    box = the_container(primary.body)
    assert box["resources"]["requests"]["cpu"] == "250m"
    assert box["env"] == [{"name": "MODE", "value": "batch"}]
    assert box["envFrom"] == [{"secretRef": {"name": "api-env"}}]
    assert "readinessProbe" not in box


def test_the_job_template_stores_the_configured_pod_spec() -> None:
    cmd = configured(PARTS["resources"], secrets=True, component_type="manual-task")
    *_, template = manifests.plan(cmd, DP, dockerconfigjson=None, secrets={"TOKEN": "x"})
    pod = json.loads(template.body["data"][manifests.TEMPLATE_KEY])
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "api-env"}}]
    assert workload.refers_to_env_secret(template.body, "api")  # so a later deploy without secrets drops it
    plain = manifests.plan(configured({}, component_type="manual-task"), DP, dockerconfigjson=None)[-1]
    assert not workload.refers_to_env_secret(plain.body, "api")
    pulling = manifests.plan(configured({}, component_type="manual-task"), DP, dockerconfigjson=b"{}")[-1]
    assert manifests.refers_to_pull_secret(pulling.body, "api")
    assert not manifests.refers_to_pull_secret(plain.body, "api")
    assert "x" not in template.body["data"].values()


def every_configured_shape() -> list[tuple[str, dict[str, Any]]]:
    """Each component type with no config part, each part alone and all of them, with and without secrets."""
    shapes: list[tuple[str, dict[str, Any]]] = []
    for overrides, _ in COMPONENT_TYPES:
        kind = overrides.get("component_type", "service")
        allowed = list(PARTS) if kind in workload.LONG_RUNNING else list(TASK_PARTS)
        if kind != "web-application":
            allowed = [p for p in allowed if p != "ingress"]
        for chosen in [(), *((part,) for part in allowed), tuple(allowed)]:
            config: dict[str, Any] = {}
            for part in chosen:
                config.update(PARTS[part])
            for secrets in (False, True):
                cmd = configured(config, secrets=secrets, **overrides)
                objs = manifests.plan(
                    cmd, DP, dockerconfigjson=b"{}", secrets={"TOKEN": "v"} if secrets else None
                )
                label = f"{kind}-{overrides.get('kind', 'deploy')}-{'+'.join(chosen) or 'none'}-{secrets}"
                shapes += [(f"{label}-{o.kind}", o.body) for o in objs]
    return shapes


def test_every_configured_object_is_valid_for_kubernetes_1_33() -> None:
    """Every object of every shape, as created (without the nulls only a merge patch carries)."""
    shapes = every_configured_shape()
    kinds = {body["kind"] for _, body in shapes}
    assert {"HorizontalPodAutoscaler", "Secret", "Ingress", "Deployment", "CronJob", "Job"} <= kinds
    for label, body in shapes:
        try:
            kubernetes_validate.validate(manifests.strip_nulls(body), "1.33", strict=True)
        except kubernetes_validate.ValidationError as exc:  # pragma: no cover - names the shape
            raise AssertionError(f"{label}: {exc}") from exc


def test_validation_catches_a_misspelt_probe_field() -> None:
    dep = by_kind(manifests.plan(configured(PARTS["probes"]), DP, dockerconfigjson=None))["Deployment"]
    the_container(dep)["readinessProbe"]["periodSecond"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifests.strip_nulls(dep), "1.33", strict=True)


def sealed(public: bytes, plaintext: bytes, key_id: str) -> SealedValues:
    box = base64.b64encode(SealedBox(PublicKey(public)).encrypt(plaintext)).decode()
    return SealedValues(recipient_key_id=key_id, ciphertext=box)


def test_only_the_recipient_opens_config_secrets_and_only_a_flat_object_of_names() -> None:
    me, other = Identity.generate(DP), Identity.generate(DP)
    assert me.open_values(sealed(me.public_key, b'{"TOKEN": "v"}', me.key_id)) == {"TOKEN": "v"}
    with pytest.raises(SealedSecretError) as wrong:
        me.open_values(sealed(other.public_key, b'{"TOKEN": "v"}', other.key_id))
    assert wrong.value.reason == reasons.CONFIG_SECRETS_WRONG_RECIPIENT
    for bad in (b"[1]", b'{"TOKEN": 1}', b'{"not a name": "v"}', b"not json"):
        with pytest.raises(SealedSecretError) as unreadable:
            me.open_values(sealed(me.public_key, bad, me.key_id))
        assert unreadable.value.reason == reasons.CONFIG_SECRETS_UNREADABLE
        assert "v" not in unreadable.value.message.split()


def pod(image_id: str, name: str = "api") -> dict[str, Any]:
    return {"status": {"containerStatuses": [{"name": name, "imageID": image_id}]}}


def test_the_digest_the_cluster_pulled_is_read_from_the_pods_image_id() -> None:
    digest = "sha256:" + "b" * 64
    assert rollout.pulled_digest([pod(f"docker-pullable://ghcr.io/acme/api@{digest}")], "api") == digest
    assert rollout.pulled_digest([pod(f"ghcr.io/acme/api@{digest}"), pod(f"x/y@{digest}")], "api") == digest
    assert rollout.pulled_digest([pod("sha256:" + "c" * 64)], "api") is None  # an image id, not a digest
    assert rollout.pulled_digest([pod("ghcr.io/acme/api@sha256:short")], "api") is None
    assert rollout.pulled_digest([pod(f"ghcr.io/acme/api@{digest}", name="sidecar")], "api") is None
    two = [pod(f"r/a@{digest}"), pod("r/a@sha256:" + "d" * 64)]
    assert rollout.pulled_digest(two, "api") is None  # Pods of two images: no single answer
    by_tag = rollout.Rollout.from_command(command(image="ghcr.io/acme/api:1.2"), None)
    assert by_tag.by_tag
    assert not rollout.Rollout.from_command(command(), None).by_tag
