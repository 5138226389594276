"""What `make manifests` renders is valid for Kubernetes 1.33 and keeps the install rules.

Every kustomization under deploy/kubernetes is rendered by deploy/kubernetes/render.py (the same
code `make manifests` runs). The rules are the ones a restricted cluster and a reviewer check:
probes, resources, replicas, pinned images, the restricted Pod Security profile, no Secret read
cluster-wide, credentials only from Secrets, and one Ingress routing the public API exactly as the
local stack's front door does. Where a real kustomize is on PATH, it must render the same objects.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from deploy.kubernetes import make_secrets, render
from libs.devstack import front_door
from libs.devstack.local_ca import LocalCA
from libs.runtime.ratelimit import AddressLimiter, PreAuthSettings
from services.console.clients.landfall import Landfall
from services.orchestrator.entrypoints import routes as orchestrator_routes

ROOT = Path(__file__).resolve().parents[2]
RENDERED = {name: render.render(path) for name, path in render.KUSTOMIZATIONS.items()}
ALL = [(name, obj) for name, objects in RENDERED.items() for obj in objects]
WORKLOADS = [(n, o) for n, o in ALL if o["kind"] in {"Deployment", "StatefulSet"}]
# The agent is the one workload with one replica (its consumer delivers a data plane's commands in
# order) and the one that mounts its service-account token (it calls the Kubernetes API).
AGENT = "landfall-agent"
SETTINGS = {
    "credentials": "services.credentials.settings",
    "webhook-gateway": "services.webhook_gateway.settings",
    "orchestrator": "services.orchestrator.settings",
    "console": "services.console.settings",
    AGENT: "services.data_plane_agent.settings",
}
INSTALL = (ROOT / "INSTALL.md").read_text()


def ids(item: tuple[str, dict[str, Any]]) -> str:
    name, obj = item
    return f"{name}:{obj['kind']}/{obj['metadata']['name']}"


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize("item", ALL, ids=ids)
def test_every_rendered_object_is_valid_for_kubernetes_1_33(item: tuple[str, dict[str, Any]]) -> None:
    kubernetes_validate.validate(item[1], "1.33", strict=True)


@pytest.mark.parametrize("item", WORKLOADS, ids=ids)
def test_every_workload_is_probed_sized_pinned_and_restricted(item: tuple[str, dict[str, Any]]) -> None:
    _, obj = item
    spec = pod(obj)
    name = obj["metadata"]["name"]
    assert obj["spec"]["replicas"] >= (1 if name == AGENT else 2), name
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is (name == AGENT)
    for container in spec["containers"]:
        image = container["image"]
        _, tag, digest = render.split_image(image)
        assert tag or digest, f"{image}: no tag"
        assert tag != "latest"
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]
        assert container["readinessProbe"]
        assert container["livenessProbe"]
        if image.split(":")[0].endswith("landfall"):  # our services: the paths of libs/runtime/http.py
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
            annotations = obj["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])


@pytest.mark.parametrize("name", list(RENDERED))
def test_each_control_plane_workload_has_a_disruption_budget_and_a_network_policy(name: str) -> None:
    objects = RENDERED[name]
    budgets = [o["spec"]["selector"]["matchLabels"] for o in objects if o["kind"] == "PodDisruptionBudget"]
    policies = [
        o["spec"]["podSelector"].get("matchLabels", {}) for o in objects if o["kind"] == "NetworkPolicy"
    ]
    for workload in (o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(sel.items() <= labels.items() for sel in policies), workload["metadata"]["name"]
        if workload["metadata"]["name"] != AGENT:
            assert any(sel.items() <= labels.items() for sel in budgets), workload["metadata"]["name"]


@pytest.mark.parametrize("name", list(RENDERED))
def test_no_secret_is_readable_cluster_wide_and_none_is_inline(name: str) -> None:
    objects = RENDERED[name]
    assert not [o for o in objects if o["kind"] == "Secret"], "credentials come from Secrets you make"
    bound = {o["roleRef"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"}
    for role in (o for o in objects if o["kind"] == "ClusterRole"):
        reads = {
            verb
            for rule in role["rules"]
            if set(rule["resources"]) & {"secrets", "*"} and set(rule["apiGroups"]) & {"", "*"}
            for verb in rule["verbs"]
        } & {"get", "list", "watch", "*"}
        if reads:
            assert role["metadata"]["name"] not in bound, (
                f"{role['metadata']['name']} reads Secrets everywhere"
            )


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("name", list(RENDERED))
def test_every_setting_is_one_the_service_reads_and_credentials_come_from_secrets(name: str) -> None:
    for workload in (o for o in RENDERED[name] if o["kind"] == "Deployment"):
        module = importlib.import_module(SETTINGS[workload["metadata"]["name"]])
        known = {f"LANDFALL_{field.upper()}" for field in module.Settings.model_fields}
        # create_base_app (every service's) reads the pre-authentication limits from the environment itself
        known |= {f"LANDFALL_{field.upper()}" for field in PreAuthSettings.model_fields}
        (container,) = pod(workload)["containers"]
        env = _env(container)
        assert env.keys() <= known, env.keys() - known
        for key in (
            "DATABASE_URL",
            "ADMIN_TOKEN",
            "VAULT_TOKEN",
            "NATS_ACCOUNT_SIGNING_SEED",
            "ENROLLMENT_TOKEN",
        ):
            if f"LANDFALL_{key}" in env:
                assert "secretKeyRef" in env[f"LANDFALL_{key}"]["valueFrom"], key


def test_every_secret_the_manifests_read_is_made_by_the_install_or_documented(tmp_path: Path) -> None:
    named: set[str] = set()
    for _, obj in WORKLOADS:
        spec = pod(obj)
        named |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in spec["containers"]:
            refs = (e["valueFrom"] for e in container.get("env", []) if "valueFrom" in e)
            named |= {ref["secretKeyRef"]["name"] for ref in refs if "secretKeyRef" in ref}
    for secret in sorted(named):
        assert f"`{secret}`" in INSTALL, f"INSTALL.md does not say how to make the Secret {secret}"
    made = make_secrets.make_secrets(
        tmp_path, database_urls={"orchestrator": "x"}, vault_tokens={"credentials": "x"}
    )
    # Not made by the install script: the agent's one-time enrollment token. The NATS servers'
    # certificate and its CA for agents are made too, unless cert-manager issues them (--no-nats-tls).
    theirs = {"landfall-agent-enrollment"}
    assert named - theirs == {s["metadata"]["name"] for s in made}
    issued = make_secrets.make_secrets(tmp_path, database_urls={}, vault_tokens={}, nats_tls=False)
    assert {"nats-tls", "landfall-agent-nats-ca"}.isdisjoint(s["metadata"]["name"] for s in issued)


def test_the_ingress_routes_every_api_path_as_the_front_door_does() -> None:
    ingresses = [o for o in RENDERED["control-plane"] if o["kind"] == "Ingress"]
    assert {r["host"] for o in ingresses for r in o["spec"]["rules"]} == {"landfall.example.com"}
    # ingress-nginx merges the Ingresses of one host into one table of paths
    paths = [p for o in ingresses for (rule,) in [o["spec"]["rules"]] for p in rule["http"]["paths"]]
    # The same table: every front-door pattern is one Ingress path, to the same service.
    table = {p["path"]: p["backend"]["service"]["name"] for p in paths}
    for pattern, service in front_door.ROUTES:
        assert table[pattern.pattern.removeprefix("^")] == front_door.SERVICE_NAMES[service]

    def ingress_nginx(path: str) -> str:
        # use-regex: anchored, case-insensitive, the longest path first.
        for candidate in sorted(paths, key=lambda p: len(p["path"]), reverse=True):
            if re.match("^" + candidate["path"], path, re.IGNORECASE):
                return str(candidate["backend"]["service"]["name"])
        raise AssertionError(f"no Ingress path for {path}")

    # shared/ lies beside the repository in the workspace; a clone elsewhere on this machine finds it there
    found = [p for p in (ROOT.parent / "shared/API.md", Path("/work/shared/API.md")) if p.exists()]
    if not found:
        pytest.skip("the public API document (shared/API.md) is not beside this clone")
    text = found[0].read_text()
    documented = set(re.findall(r"`(?:GET|POST|PUT|PATCH|DELETE) (/v1/[^`?\s]*)", text))
    assert len(documented) >= 15
    # Beyond API.md's tables: every orchestrator route, and the gateway's component paths.
    documented |= {r.path for r in orchestrator_routes.ROUTES}
    component = "/v1/orgs/{org}/projects/{project}/components/{component}"
    documented |= {f"{component}/{tail}" for tail in ("tokens/{id}", "signing-secret", "ci-snippets")}
    for template in sorted(documented):
        path = re.sub(r"\{[^}]+\}", "x1", template)
        expected = front_door.route(path)
        assert expected, path
        assert ingress_nginx(path) == front_door.SERVICE_NAMES[expected], template
    assert ingress_nginx("/") == "console"
    assert ingress_nginx("/static/console.css") == "console"


@pytest.mark.parametrize("name", ["control-plane", "local", "production"])
def test_a_browser_keeps_reaching_the_console_replica_it_signed_in_on(name: str) -> None:
    """Sign-ins live in a console replica's memory: with more than one replica, the console's paths
    need sticky sessions, and only they (the API stays balanced per request)."""
    objects = RENDERED[name]
    (console,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "console"]
    assert console["spec"]["replicas"] > 1
    ingresses = [o for o in objects if o["kind"] == "Ingress"]
    affinity = "nginx.ingress.kubernetes.io/affinity"

    def backends(ingress: dict[str, Any]) -> set[str]:
        return {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}

    assert sum("console" in backends(i) for i in ingresses) == 1  # one Ingress serves the console
    for ingress in ingresses:
        notes = ingress["metadata"].get("annotations", {})
        if "console" in backends(ingress):
            assert backends(ingress) == {"console"}, "affinity is per Ingress: the console's has no API path"
            assert notes[affinity] == "cookie"
            assert notes["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
            assert notes["nginx.ingress.kubernetes.io/session-cookie-samesite"] == "Strict"
            if ingress["spec"].get("tls"):
                assert notes["nginx.ingress.kubernetes.io/session-cookie-secure"] == "true"
        else:
            assert affinity not in notes


def test_a_patch_with_a_target_keeps_each_object_s_name(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (base / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [base]\npatches:\n  - path: p.yaml\n    target: {kind: ConfigMap}\n"
    )
    (tmp_path / "p.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")
    rendered = render.render(tmp_path)
    assert [(o["metadata"]["name"], o["data"]) for o in rendered] == [("a", {"k": "v"}), ("b", {"k": "v"})]


def test_the_kept_agent_manifest_is_the_agent_base_rendered() -> None:
    kept = (ROOT / "deploy/kubernetes/agent.yaml").read_text()
    assert kept == render.KEPT_HEADER + render.dump(render.render(render.KUSTOMIZATIONS["agent"])), (
        "run `make manifests`"
    )


def _kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(_kustomize() is None, reason="no kustomize or kubectl on PATH to compare with")
@pytest.mark.parametrize("name", list(render.KUSTOMIZATIONS))
def test_a_real_kustomize_renders_the_same_objects(name: str) -> None:
    command = _kustomize()
    assert command
    result = subprocess.run(
        [*command, str(render.KUSTOMIZATIONS[name])], capture_output=True, text=True, timeout=120, check=True
    )
    theirs = {render.identity(o): o for o in yaml.safe_load_all(result.stdout) if o}
    ours = {render.identity(o): o for o in RENDERED[name]}
    assert ours.keys() == theirs.keys()
    for key, obj in ours.items():
        assert obj == theirs[key], key


def test_the_renderer_refuses_what_it_would_render_unlike_kustomize(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\nnamePrefix: x-\n")
    with pytest.raises(render.KustomizeError, match="namePrefix"):
        render.render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [cm.yaml]\npatches:\n  - patch: |-\n      apiVersion: v1\n      kind: ConfigMap\n"
        "      metadata: {name: a}\n      data: {k: v}\n      spec: {list: [{name: n}]}\n"
    )
    with pytest.raises(render.KustomizeError, match="list of mappings"):
        render.render(tmp_path)


@pytest.mark.parametrize("name", ["nats", "local", "production"])
def test_nats_speaks_tls_to_clients_in_every_overlay(name: str) -> None:
    """Services refuse nats:// to anything but loopback, so no overlay may serve plain NATS."""
    (config,) = [
        o for o in RENDERED[name] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-config"
    ]
    text: str = config["data"]["nats.conf"]
    start = text.index("tls {")
    assert "cert_file: /etc/nats/tls/tls.crt" in text[start : text.index("}", start)]
    (nats,) = [o for o in RENDERED[name] if o["kind"] == "StatefulSet"]
    mounts = {m["mountPath"]: m["name"] for m in pod(nats)["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(nats)["volumes"]}
    assert volumes[mounts["/etc/nats/tls"]]["secret"]["secretName"] == "nats-tls"


@pytest.mark.parametrize("name", ["nats", "production"])
def test_the_nats_configuration_with_the_install_s_auth_is_accepted_by_nats_server(
    tmp_path: Path, name: str
) -> None:
    server = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    (config,) = [
        o for o in RENDERED[name] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nats-config"
    ]
    cert = LocalCA(tmp_path / "ca").server("nats")
    made = {
        s["metadata"]["name"]: s["stringData"]
        for s in make_secrets.make_secrets(tmp_path / "keys", database_urls={}, vault_tokens={})
    }
    auth = made["landfall-nats-server"]
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth/operator.jwt").write_text(auth["operator.jwt"])
    (tmp_path / "auth/auth.conf").write_text(
        auth["auth.conf"].replace(make_secrets.NATS_AUTH_MOUNT, str(tmp_path / "auth"))
    )
    text = (
        config["data"]["nats.conf"]
        .replace("/data/", f"{tmp_path}/data/")
        .replace("/var/run/nats", str(tmp_path))
        .replace("/etc/nats/tls/tls.crt", str(cert.cert_file))
        .replace("/etc/nats/tls/tls.key", str(cert.key_file))
    )
    (tmp_path / "nats.conf").write_text(text)
    result = subprocess.run(
        [server, "-t", "-c", str(tmp_path / "nats.conf")],
        env={"POD_NAME": "nats-0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Made again from the kept keys: the same operator and admin token (enrolled agents keep working).
    again = {
        s["metadata"]["name"]: s["stringData"]
        for s in make_secrets.make_secrets(tmp_path / "keys", database_urls={}, vault_tokens={})
    }
    assert again["landfall-nats-server"] == auth
    assert again["landfall-admin"] == made["landfall-admin"]
    assert set(made["landfall-nats"]) == {
        f"{s}.creds" for s in ("credentials", "webhook-gateway", "orchestrator", "console")
    }


def _made_secrets(tmp_path: Path) -> dict[str, dict[str, str]]:
    made = make_secrets.make_secrets(
        tmp_path,
        database_urls={s: f"postgresql://{s}@db:5432/landfall" for s in make_secrets.DATABASE_USERS},
        vault_tokens={s: f"token-of-{s}" for s in make_secrets.VAULT_USERS},
    )
    return {s["metadata"]["name"]: s["stringData"] for s in made}


def _rendered_env(
    objects: list[dict[str, Any]], workload: dict[str, Any], secrets: dict[str, dict[str, str]]
) -> dict[str, str]:
    """What the workload's container gets: the rendered ConfigMaps, the install's Secrets."""
    configs = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["data"]
        for o in objects
        if o["kind"] == "ConfigMap"
    }
    namespace = workload["metadata"]["namespace"]
    (container,) = pod(workload)["containers"]
    env: dict[str, str] = {}
    for item in container["env"]:
        source = item.get("valueFrom", {})
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = configs[(namespace, ref["name"])]
            if ref["key"] in data or not ref.get("optional"):
                env[item["name"]] = data[ref["key"]]  # every key that is not optional exists
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if ref["name"] in secrets:
                env[item["name"]] = secrets[ref["name"]][ref["key"]]
            else:
                assert ref.get("optional"), f"{ref['name']} is neither made by the install nor optional"
        else:
            env[item["name"]] = "from-the-downward-api"
    return env


def _use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith(("LANDFALL_", "VAULT_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_each_service_reads_its_settings_from_the_rendered_config_and_the_install_s_secrets(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = RENDERED[overlay]
    secrets = _made_secrets(tmp_path)
    for workload in (o for o in objects if o["kind"] == "Deployment"):
        (container,) = pod(workload)["containers"]
        env = _rendered_env(objects, workload, secrets)
        for volume in pod(workload).get("volumes", []):
            if "secret" in volume and volume["secret"]["secretName"] in secrets:
                for key in volume["secret"].get("items", []):
                    assert key["key"] in secrets[volume["secret"]["secretName"]], key
        _use_env(monkeypatch, env)
        module = importlib.import_module(SETTINGS[workload["metadata"]["name"]])
        settings = module.Settings()
        assert settings.http_port == container["ports"][0]["containerPort"]
        assert settings.http_host == "0.0.0.0"  # a pod listens on its own address
        assert all(url.startswith("tls://") for url in settings.nats_servers)
        # the servers' certificate is checked against the install's CA
        assert str(settings.nats_ca_file) == "/etc/landfall/nats-ca/ca.crt"
        if hasattr(settings, "vault_token"):  # every Vault user gets its own token, none goes without
            assert settings.vault_token.get_secret_value() == f"token-of-{workload['metadata']['name']}"
            assert settings.vault_addr.startswith("http")


@dataclass
class _Request:
    remote: str
    headers: dict[str, str]


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_a_browser_s_refused_sign_ins_count_on_its_address_at_the_console_and_at_the_services(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As installed: ingress-nginx (defaults: X-Forwarded-For replaced by its peer) -> console ->
    a service. One key guesser must not lock every console user out, at either limit."""
    objects = RENDERED[overlay]
    secrets = _made_secrets(tmp_path)
    workloads = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    browser, controller, console_pod = "198.51.100.23", "10.244.1.9", "10.244.2.5"

    _use_env(monkeypatch, _rendered_env(objects, workloads["console"], secrets))
    console_settings = importlib.import_module(SETTINGS["console"]).Settings()
    at_console = AddressLimiter(PreAuthSettings()).address(
        _Request(remote=controller, headers={"X-Forwarded-For": browser})
    )
    assert at_console == browser
    api = Landfall(
        None,  # type: ignore[arg-type]  # only its routing is used
        base_url=console_settings.url,
        services={
            "credentials": console_settings.credentials_url,
            "gateway": console_settings.gateway_url,
            "orchestrator": console_settings.orchestrator_url,
        },
    )
    for service, path in (
        ("orchestrator", "/v1/orgs/acme/projects"),
        ("credentials", "/v1/orgs/acme/registries"),
        ("webhook-gateway", "/v1/orgs/acme/projects/p/components/c/tokens"),
    ):
        # straight to the service's cluster Service: the Ingress would drop the header the console sends
        assert api.url(path).startswith(f"http://{service}.landfall.svc:"), path
        _use_env(monkeypatch, _rendered_env(objects, workloads[service], secrets))
        at_service = AddressLimiter(PreAuthSettings()).address(
            _Request(remote=console_pod, headers={"X-Forwarded-For": at_console})
        )
        assert at_service == browser, service
