"""The shipped agent manifest grants what the agent's Kubernetes adapter calls, and no more.

Writes are granted cluster-wide but confined by a ValidatingAdmissionPolicy to namespaces (and
objects) Landfall labelled; Secrets are read only through a role the agent binds per namespace
(deploy/kubernetes/agent.yaml says why). Every object is valid for Kubernetes 1.33.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from libs.contracts import naming
from services.data_plane_agent.domain import manifests

ROOT = Path(__file__).resolve().parents[2]
DOCS: list[dict[str, Any]] = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/agent.yaml").read_text()))
AGENT = "system:serviceaccount:landfall-system:landfall-agent"


def named(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name)


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                granted.setdefault((g, r), set()).update(rule["verbs"])
    return granted


def test_agent_manifest_grants_every_kind_the_agent_writes() -> None:
    role = named("ClusterRole", "landfall-agent")
    granted = grants(role)
    per_namespace = grants(named("ClusterRole", manifests.SECRETS_ROLE))
    for key in [
        ("", "namespaces"),
        ("", "services"),
        ("", "secrets"),
        ("", "configmaps"),
        ("apps", "deployments"),
        ("batch", "cronjobs"),
        ("batch", "jobs"),
        ("networking.k8s.io", "ingresses"),
        ("autoscaling", "horizontalpodautoscalers"),
    ]:
        verbs = granted[key] | per_namespace.get(key, set())
        assert {"get", "create"} <= verbs, key
        if key != ("", "namespaces"):  # deleting a component removes its objects, never a namespace
            assert {"list", "delete"} <= verbs, key
    assert "delete" not in granted[("", "namespaces")]
    assert "patch" in granted[("", "namespaces")]  # a namespace of its own gets the Pod Security labels
    assert "list" in granted[("", "pods")]  # failure reasons come from pods' waiting states
    assert "*" not in {v for verbs in granted.values() for v in verbs}
    # Every settings key the manifest sets is one the agent reads.
    from services.data_plane_agent.settings import Settings

    known = {f"LANDFALL_{name.upper()}" for name in Settings.model_fields}
    agent = named("Deployment", "landfall-agent")
    env = {e["name"] for e in agent["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env <= known, env - known
    assert all(re.match(r"^LANDFALL_", name) for name in env)


def test_no_secret_is_readable_cluster_wide_only_through_the_per_namespace_binding() -> None:
    granted = grants(named("ClusterRole", "landfall-agent"))
    assert not {"get", "list", "watch"} & granted[("", "secrets")]
    assert {"get", "list"} <= grants(named("ClusterRole", manifests.SECRETS_ROLE))[("", "secrets")]
    # Nothing binds the Secret reader cluster-wide; the agent may bind that role and no other.
    bound = {d["roleRef"]["name"] for d in DOCS if d["kind"] == "ClusterRoleBinding"}
    assert bound == {"landfall-agent"}
    (bind,) = [r for r in named("ClusterRole", "landfall-agent")["rules"] if "bind" in r["verbs"]]
    assert bind["resourceNames"] == [manifests.SECRETS_ROLE]
    assert bind["verbs"] == ["bind"]
    # The agent learns its own service account for that binding from the downward API.
    env = {
        e["name"]: e
        for e in named("Deployment", "landfall-agent")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (
        env["LANDFALL_KUBE_SERVICE_ACCOUNT"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "spec.serviceAccountName"
    )
    assert (
        env["LANDFALL_KUBE_SERVICE_ACCOUNT_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.namespace"
    )


def test_a_policy_confines_the_agent_s_writes_to_namespaces_landfall_labelled() -> None:
    policy = named("ValidatingAdmissionPolicy", "landfall-agent-writes")["spec"]
    binding = named("ValidatingAdmissionPolicyBinding", "landfall-agent-writes")["spec"]
    assert binding["policyName"] == "landfall-agent-writes"
    assert binding["validationActions"] == ["Deny"]
    assert policy["failurePolicy"] == "Fail"
    (only_the_agent,) = policy["matchConditions"]
    assert f"'{AGENT}'" in only_the_agent["expression"]
    (rule,) = policy["matchConstraints"]["resourceRules"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    written = {g for g, _ in grants(named("ClusterRole", "landfall-agent"))}
    assert written <= set(rule["apiGroups"])
    assert rule["resources"] == ["*"]
    cel = [v["expression"] for v in policy["validations"]]
    label = f"namespaceObject.metadata.labels['{naming.MANAGED_BY}'] == 'landfall'"
    assert any(label in expr for expr in cel), cel
    assert any(f"oldObject.metadata.labels['{naming.MANAGED_BY}'] == 'landfall'" in expr for expr in cel)
    assert any(f"oldObject.metadata.labels['{naming.LABEL_DATAPLANE}']" in expr for expr in cel)
    assert any(f"object.roleRef.name == '{manifests.SECRETS_ROLE}'" in expr for expr in cel)
    # The agent's own namespace is not Landfall's: the agent cannot change itself.
    assert naming.MANAGED_BY not in (named("Namespace", "landfall-system")["metadata"].get("labels") or {})


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_every_object_in_the_manifest_is_valid_for_kubernetes_1_33(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.33", strict=True)
