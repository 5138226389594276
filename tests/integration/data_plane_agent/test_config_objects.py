"""Per-environment config in the data plane: the real agent applies commands with a config and the
test reads what the sandbox cluster stored (replicas or an HPA, resources, probes, env, the
Opaque env Secret and envFrom, Ingress host and TLS), each object validated against 1.33."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
from nacl.public import PublicKey, SealedBox

from libs.contracts.config import WorkloadConfig
from libs.contracts.messages import SealedValues
from libs.devstack.servers import DockerRegistry
from services.data_plane_agent.domain.identity import Identity
from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.helpers import Harness
from tests.support import eventually


def sealed_values(values: dict[str, str], public_key: bytes) -> SealedValues:
    """What the credentials service does with an environment's config secrets."""
    box = SealedBox(PublicKey(public_key)).encrypt(json.dumps(values).encode())
    return SealedValues(
        recipient_key_id=hashlib.sha256(public_key).hexdigest()[:16],
        ciphertext=base64.b64encode(box).decode(),
    )


def configured(
    h: Harness, component: str, config: dict[str, Any], *, version: int, seq: int, **overrides: Any
) -> Any:
    secrets: dict[str, str] | None = overrides.pop("secrets", None)
    return h.command(
        component,
        seq=seq,
        config=WorkloadConfig.model_validate(config),
        config_version=version,
        secrets=sealed_values(secrets, h.identity.public_key) if secrets is not None else None,
        secret_names=sorted(secrets or {}),
        **overrides,
    )


async def deployed(h: Harness, cmd: Any) -> None:
    await h.send(cmd)
    final = await h.wait_report(cmd.deployment_id)
    assert final.status == "succeeded", final


def stored(h: Harness, api_version: str, plural: str, name: str) -> dict[str, Any]:
    obj = h.obj(api_version, plural, name)
    assert obj is not None, f"{plural}/{name} is not in the cluster"
    for noise in ("status",):
        obj.pop(noise, None)
    meta = {k: v for k, v in obj["metadata"].items() if k in ("name", "namespace", "labels", "annotations")}
    kubernetes_validate.validate({**obj, "metadata": meta}, "1.33", strict=False)
    return obj


def container_of(dep: dict[str, Any]) -> dict[str, Any]:
    (box,) = dep["spec"]["template"]["spec"]["containers"]
    return dict(box)


async def test_a_service_runs_with_its_replicas_resources_probes_env_and_secrets(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        config = {
            "replicas": 3,
            "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "probes": {"readiness": {"path": "/ready", "period_seconds": 5}, "liveness": {"path": "/live"}},
        }
        cmd = configured(
            h, "api", config, version=2, seq=1, env={"MODE": "prod"}, secrets={"TOKEN": "t0p", "DB": "pg"}
        )
        await deployed(h, cmd)

        dep = stored(h, "apps/v1", "deployments", "api")
        assert dep["spec"]["replicas"] == 3
        assert dep["spec"]["template"]["metadata"]["annotations"]["landfall.dev/config-version"] == "2"
        box = container_of(dep)
        assert box["resources"] == config["resources"]
        assert box["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080, "scheme": "HTTP"}
        assert box["readinessProbe"]["periodSeconds"] == 5
        assert box["livenessProbe"]["httpGet"]["path"] == "/live"
        assert box["env"] == [{"name": "MODE", "value": "prod"}]
        assert box["envFrom"] == [{"secretRef": {"name": "api-env"}}]
        assert "t0p" not in json.dumps(dep)

        secret = stored(h, "v1", "secrets", "api-env")
        assert secret["type"] == "Opaque"
        assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "landfall"
        assert secret["metadata"]["labels"]["landfall.dev/dataplane"] == h.dp
        assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
            "TOKEN": "t0p",
            "DB": "pg",
        }

        # A secret deleted (and one changed) in a new config version: the key goes, the Pods roll.
        again = configured(h, "api", config, version=3, seq=2, secrets={"TOKEN": "n3w"})
        await deployed(h, again)
        secret = stored(h, "v1", "secrets", "api-env")
        assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {"TOKEN": "n3w"}
        dep = stored(h, "apps/v1", "deployments", "api")
        assert dep["spec"]["template"]["metadata"]["annotations"]["landfall.dev/config-version"] == "3"

        # The last secret gone: the Secret goes and the container no longer reads it.
        await deployed(h, configured(h, "api", config, version=4, seq=3))
        assert h.obj("v1", "secrets", "api-env") is None
        assert container_of(stored(h, "apps/v1", "deployments", "api"))["envFrom"] == []


async def test_autoscaling_is_an_hpa_that_goes_when_the_config_drops_it(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        scaling = {"autoscaling": {"min_replicas": 2, "max_replicas": 6, "target_cpu_percent": 60}}
        await deployed(h, configured(h, "web", scaling, version=1, seq=1))
        hpa = stored(h, "autoscaling/v2", "horizontalpodautoscalers", "web")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
        assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
        assert hpa["metadata"]["labels"]["landfall.dev/dataplane"] == h.dp

        await deployed(h, configured(h, "web", {"replicas": 4}, version=2, seq=2))
        assert h.obj("autoscaling/v2", "horizontalpodautoscalers", "web") is None
        assert stored(h, "apps/v1", "deployments", "web")["spec"]["replicas"] == 4

        # Deleting the component deletes its HPA too.
        await deployed(h, configured(h, "web", scaling, version=3, seq=3))
        await h.send_removal(h.removal("web", seq=10))

        async def removed() -> bool:
            hpa = h.obj("autoscaling/v2", "horizontalpodautoscalers", "web")
            return hpa is None and h.obj("apps/v1", "deployments", "web") is None

        await eventually(removed, what="the removed component's HPA and Deployment gone")


async def test_a_web_applications_ingress_gets_its_host_and_tls(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        ingress = {"ingress": {"host": "shop.example.com", "path": "/app", "tls_secret": "shop-tls"}}
        cmd = configured(
            h, "shop", ingress, version=1, seq=1, component_type="web-application", ingress_class="nginx"
        )
        await deployed(h, cmd)
        ing = stored(h, "networking.k8s.io/v1", "ingresses", "shop")
        (rule,) = ing["spec"]["rules"]
        assert rule["host"] == "shop.example.com"
        assert rule["http"]["paths"][0]["path"] == "/app"
        assert ing["spec"]["tls"] == [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]

        # Without an ingress class the data plane gets no Ingress, and the report says so.
        other = configured(h, "blog", ingress, version=1, seq=1, component_type="web-application")
        await deployed(h, other)
        assert h.obj("networking.k8s.io/v1", "ingresses", "blog") is None
        (progressing,) = [r for r in h.reports_for(other.deployment_id) if r.status == "progressing"]
        assert "no ingress class" in (progressing.message or "")


async def test_a_scheduled_task_gets_resources_env_and_secrets(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        config = {"resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}
        cmd = configured(
            h,
            "nightly",
            config,
            version=1,
            seq=1,
            component_type="scheduled-task",
            schedule="0 3 * * *",
            port=None,
            env={"MODE": "batch"},
            secrets={"KEY": "k"},
        )
        await deployed(h, cmd)
        cron = stored(h, "batch/v1", "cronjobs", "nightly")
        (box,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert box["resources"] == config["resources"]
        assert box["env"] == [{"name": "MODE", "value": "batch"}]
        assert box["envFrom"] == [{"secretRef": {"name": "nightly-env"}}]
        assert base64.b64decode(stored(h, "v1", "secrets", "nightly-env")["data"]["KEY"]) == b"k"


async def test_secrets_sealed_to_another_key_fail_the_deploy_and_write_nothing(
    open_harness: OpenHarness,
) -> None:
    async with open_harness() as h:
        stranger = Identity.generate(h.dp)
        cmd = configured(h, "api", {}, version=1, seq=1)
        cmd = cmd.model_copy(
            update={"secrets": sealed_values({"A": "b"}, stranger.public_key), "secret_names": ["A"]}
        )
        await h.send(cmd)
        final = await h.wait_report(cmd.deployment_id)
        assert (final.status, final.reason) == ("failed", "config_secrets_wrong_recipient")
        assert h.obj("apps/v1", "deployments", "api") is None
        assert h.obj("v1", "secrets", "api-env") is None


async def test_a_rollout_by_tag_reports_the_digest_the_cluster_pulled(
    open_harness: OpenHarness, anonymous_registry: DockerRegistry, unique: str
) -> None:
    digest = anonymous_registry.push_image(f"acme/{unique}", "1.0")
    async with open_harness() as h:
        by_tag = await h.deploy("api", image=f"{anonymous_registry.host}/acme/{unique}:1.0")
        final = await h.wait_report(by_tag.deployment_id)
        assert (final.status, final.digest) == ("succeeded", digest)

        pinned = h.command("api", seq=2, image=f"{anonymous_registry.host}/acme/{unique}@{digest}")
        await deployed(h, pinned)
        assert h.reports_for(pinned.deployment_id)[-1].digest is None  # the command named it already
