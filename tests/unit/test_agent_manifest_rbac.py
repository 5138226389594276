"""The shipped agent manifest grants what the agent's Kubernetes adapter calls, and no more verbs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_agent_manifest_grants_every_kind_the_agent_writes() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/agent.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    for key in [
        ("", "namespaces"),
        ("", "services"),
        ("", "secrets"),
        ("", "configmaps"),
        ("apps", "deployments"),
        ("batch", "cronjobs"),
        ("batch", "jobs"),
        ("networking.k8s.io", "ingresses"),
    ]:
        assert {"get", "create"} <= granted[key], key
        if key != ("", "namespaces"):  # deleting a component removes its objects, never a namespace
            assert {"list", "delete"} <= granted[key], key
    assert "delete" not in granted[("", "namespaces")]
    assert "list" in granted[("", "pods")]  # failure reasons come from pods' waiting states
    assert "*" not in {v for verbs in granted.values() for v in verbs}
    # Every settings key the manifest sets is one the agent reads.
    from services.data_plane_agent.settings import Settings

    known = {f"LANDFALL_{name.upper()}" for name in Settings.model_fields}
    agent = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"] for e in agent["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env <= known, env - known
    assert all(re.match(r"^LANDFALL_", name) for name in env)
