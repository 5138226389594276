"""What a deploy command turns into: names, labels, annotations and merge-patch-safe objects."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from nacl.public import PublicKey, SealedBox

from libs.contracts.ids import new_id
from libs.contracts.messages import DeployCommand, SealedSecret, utcnow
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
        "namespace": "lf-acme-shop-production-0123456789",
        "component_type": "service",
        "image": "ghcr.io/acme/api@sha256:" + "a" * 64,
        "seq": 7,
        "port": 8080,
        "dispatched_at": utcnow(),
    }
    values.update(overrides)
    return DeployCommand(**values)


@pytest.mark.parametrize(
    ("overrides", "kinds"),
    [
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
    ],
)
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
