"""What a deploy command turns into: names, labels, annotations and merge-patch-safe objects."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from nacl.public import PublicKey, SealedBox

from libs.contracts.ids import new_id
from libs.contracts.messages import DeployCommand, RemoveCommand, SealedSecret, utcnow
from libs.contracts.naming import namespace_for
from services.data_plane_agent.domain import manifests
from services.data_plane_agent.domain.identity import Identity, SealedSecretError

DP = "dp_01jabcdefghjkmnpqrstvwxyz0"


def command(**overrides: Any) -> DeployCommand:
    values: dict[str, Any] = {
        "deployment_id": "dep_01jabcdefghjkmnpqrstvwxyz1",
        "dataplane_id": DP,
        "org": "acme",
        "project": "shop",
        "component": "api",
        "environment": "production",
        "namespace": namespace_for("acme", "shop", "production"),
        "component_type": "service",
        "image": "ghcr.io/acme/api@sha256:" + "a" * 64,
        "seq": 7,
        "port": 8080,
        "dispatched_at": utcnow(),
    }
    values.update(overrides)
    return DeployCommand(**values)


COMPONENT_TYPES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ["Service", "Deployment"]),
    ({"port": None}, ["Deployment"]),
    ({"component_type": "web-application"}, ["Service", "Deployment"]),
    (
        {"component_type": "web-application", "ingress_class": "nginx"},
        ["Service", "Ingress", "Deployment"],
    ),
    ({"component_type": "scheduled-task", "schedule": "0 * * * *"}, ["CronJob"]),
    ({"component_type": "manual-task"}, ["ConfigMap"]),
    (
        {
            "component_type": "manual-task",
            "kind": "run",
            "execution_id": "exe_01jabcdefghjkmnpqrstvwxyz2",
        },
        ["Job"],
    ),
]


@pytest.mark.parametrize(("overrides", "kinds"), COMPONENT_TYPES)
def test_each_component_type_gets_its_objects_primary_last(
    overrides: dict[str, Any], kinds: list[str]
) -> None:
    cmd = command(**overrides)
    objs = manifests.plan(cmd, DP, dockerconfigjson=None)
    assert [o.kind for o in objs] == kinds
    assert (objs[-1].kind, objs[-1].name) == manifests.primary(cmd)
    with_pull = manifests.plan(cmd, DP, dockerconfigjson=b"{}")
    assert [o.kind for o in with_pull] == ["Secret", *kinds]
    for obj in with_pull:
        meta = obj.body["metadata"]
        assert meta["labels"]["landfall.dev/component"] == "api"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "landfall"
        assert meta["labels"]["landfall.dev/dataplane"] == DP
        assert meta["annotations"]["landfall.dev/deployment-id"] == cmd.deployment_id
        assert meta["annotations"]["landfall.dev/deployment-seq"] == "7"
        assert meta["namespace"] == cmd.namespace


def test_lists_are_always_present_so_a_merge_patch_clears_what_an_earlier_deploy_set() -> None:
    (dep,) = [
        o for o in manifests.plan(command(port=None), DP, dockerconfigjson=None) if o.kind == "Deployment"
    ]
    pod = dep.body["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == []
    assert pod["containers"][0]["env"] == []
    assert pod["containers"][0]["ports"] == []
    assert pod["containers"][0]["args"] == []


def test_a_cronjob_without_time_zone_deletes_an_old_one_on_patch_and_omits_it_on_create() -> None:
    cron = manifests.cronjob(command(component_type="scheduled-task", schedule="0 * * * *"), DP, pull=False)
    assert cron.body["spec"]["timeZone"] is None  # JSON null: merge patch removes the field
    assert "timeZone" not in manifests.strip_nulls(cron.body)["spec"]


def test_run_jobs_are_named_after_the_execution_and_fit_a_dns_label() -> None:
    execution = new_id("exe")
    name = manifests.job_name("a" * 40, execution)
    assert name == "a" * 40 + "-" + execution[-8:]
    assert len(name) <= 63


def test_the_pull_secret_holds_the_docker_config_as_given() -> None:
    secret = manifests.pull_secret(command(), DP, b'{"auths":{}}')
    assert secret.name == "api-pull"
    assert secret.body["type"] == "kubernetes.io/dockerconfigjson"
    assert base64.b64decode(secret.body["data"][".dockerconfigjson"]) == b'{"auths":{}}'


def sealed_to(public: bytes, plaintext: bytes, key_id: str | None = None) -> SealedSecret:
    return SealedSecret(
        recipient_key_id=key_id or hashlib.sha256(public).hexdigest()[:16],
        ciphertext=base64.b64encode(SealedBox(PublicKey(public)).encrypt(plaintext)).decode(),
        registry_id="reg_01jabcdefghjkmnpqrstvwxyz3",
    )


def test_only_the_recipient_opens_a_sealed_secret() -> None:
    me, other = Identity.generate(DP), Identity.generate(DP)
    config = json.dumps({"auths": {"ghcr.io": {"auth": "dTpw"}}}).encode()
    assert me.open(sealed_to(me.public_key, config)) == config
    with pytest.raises(SealedSecretError) as wrong:
        me.open(sealed_to(other.public_key, config))
    assert wrong.value.reason == "pull_secret_wrong_recipient"
    with pytest.raises(SealedSecretError) as garbled:
        me.open(sealed_to(me.public_key, config).model_copy(update={"ciphertext": "AAAA"}))
    assert garbled.value.reason == "pull_secret_unreadable"
    assert "dTpw" not in str(wrong.value) + str(garbled.value)


def pod_specs(obj: manifests.Obj) -> list[dict[str, Any]]:
    """The pod specs an object holds: a workload's template, or the job template's stored JSON."""
    spec = obj.body.get("spec") or {}
    if obj.kind in ("Deployment", "Job"):
        return [spec["template"]["spec"]]
    if obj.kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if obj.kind == "ConfigMap" and manifests.TEMPLATE_KEY in obj.body["data"]:
        return [json.loads(obj.body["data"][manifests.TEMPLATE_KEY])]
    return []


@pytest.mark.parametrize(("overrides", "kinds"), COMPONENT_TYPES)
def test_every_pod_runs_restricted_without_a_service_account_token(
    overrides: dict[str, Any], kinds: list[str]
) -> None:
    specs = [
        p for o in manifests.plan(command(**overrides), DP, dockerconfigjson=b"{}") for p in pod_specs(o)
    ]
    assert len(specs) == 1
    (pod,) = specs
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }


def removal() -> RemoveCommand:
    where = command().model_dump(
        include={"dataplane_id", "org", "project", "component", "environment", "namespace"}
    )
    return RemoveCommand(teardown_id="td_01jabcdefghjkmnpqrstvwxyz2", seq=9, sent_at=utcnow(), **where)


def test_namespaces_enforce_the_restricted_pod_security_standard() -> None:
    labels = manifests.namespace(command(), DP)["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"
    assert labels["landfall.dev/dataplane"] == DP
    assert "landfall.dev/component" not in labels  # shared by the project's components


def test_a_pod_selector_leaves_out_the_data_plane_so_older_deployments_stay_patchable() -> None:
    dep = manifests.deployment(command(), DP, pull=False).body
    assert "landfall.dev/dataplane" not in dep["spec"]["selector"]["matchLabels"]
    assert dep["spec"]["template"]["metadata"]["labels"]["landfall.dev/dataplane"] == DP


def every_object_written() -> list[dict[str, Any]]:
    """Each kind of object the agent writes, once for every component type."""
    bodies = [
        o.body
        for overrides, _ in COMPONENT_TYPES
        for o in manifests.plan(command(**overrides), DP, dockerconfigjson=b"{}")
    ]
    bodies += [
        manifests.plan(
            command(component_type="web-application", ingress_class="nginx", ingress_host="shop.example.com"),
            DP,
            dockerconfigjson=None,
        )[1].body,
        manifests.cronjob(
            command(component_type="scheduled-task", schedule="0 * * * *", timezone="Europe/Paris"),
            DP,
            pull=True,
        ).body,
        manifests.namespace(command(), DP),
        manifests.tombstone(removal(), DP).body,
        manifests.secrets_binding(command(), DP, "landfall-system:landfall-agent"),
    ]
    return bodies


@pytest.mark.parametrize("body", every_object_written(), ids=lambda b: f"{b['kind']}-{b['metadata']['name']}")
def test_every_object_written_is_valid_for_kubernetes_1_33(body: dict[str, Any]) -> None:
    """Validated as created (`strip_nulls`: the nulls only delete fields in a merge patch)."""
    kubernetes_validate.validate(manifests.strip_nulls(body), "1.33", strict=True)


def test_validation_catches_a_field_kubernetes_does_not_know() -> None:
    """The check above would catch a misspelt field (strict: no unknown properties)."""
    dep = manifests.deployment(command(), DP, pull=False).body
    dep["spec"]["template"]["spec"]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifests.strip_nulls(dep), "1.33", strict=True)
