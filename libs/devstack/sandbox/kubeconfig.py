"""A kubeconfig pointing at the sandbox, for the agent and for `kubectl`.

The sandbox speaks plain HTTP and checks no token; the kubeconfig still carries a dummy
token user so clients that require credentials load it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_kubeconfig(path: str | Path, url: str, namespace: str | None = None) -> Path:
    """Write a kubeconfig for the sandbox: one cluster (`url`, TLS unverified), a dummy token user."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    q = json.dumps  # a JSON string is a valid YAML double-quoted scalar
    context_namespace = f"\n    namespace: {q(namespace)}" if namespace else ""
    text = f"""\
apiVersion: v1
kind: Config
clusters:
- name: landfall-sandbox
  cluster:
    server: {q(url)}
    insecure-skip-tls-verify: true
users:
- name: landfall-sandbox
  user:
    token: {q("sandbox-token")}
contexts:
- name: landfall-sandbox
  context:
    cluster: landfall-sandbox
    user: landfall-sandbox{context_namespace}
current-context: landfall-sandbox
"""
    target.write_text(text, encoding="utf-8")
    target.chmod(0o600)
    return target
