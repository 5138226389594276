"""The agent's rollout watches, against the sandbox Kubernetes API.

A watch must wake the agent when its object changes, and must not build an API
client of its own: kubernetes_asyncio's `Watch()` does, loading the CA bundle
each time (~18 ms of CPU per rollout on the agent's event loop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.watch import watch as watch_module

from libs.devstack.sandbox import SandboxCluster, write_kubeconfig
from services.data_plane_agent.clients.kube import Kube


def _deployment(image: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[Kube]:
    async with SandboxCluster() as cluster:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", cluster.url)
        kube = await Kube.connect(kubeconfig=kubeconfig, max_connections=4, max_watches=2)
        try:
            yield kube
        finally:
            await kube.close()


async def test_a_watch_wakes_on_changes_and_builds_no_api_client_of_its_own(
    kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ApiClient] = []

    class CountingApiClient(ApiClient):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(watch_module, "ApiClient", CountingApiClient)
    await kube.apply("Deployment", "default", _deployment("registry.example/web:1"))

    for version in range(2, 6):  # one watch per rollout, as the agent opens them
        async with kube.changes("Deployment", "default", "web") as feed:
            assert await feed.wait(5), "the watch reports the existing object"
            await kube.apply("Deployment", "default", _deployment(f"registry.example/web:{version}"))
            assert await feed.wait(5), "the watch wakes on the change"

    assert built == []
    # The borrowed client is still open once the watches are closed.
    current = await kube.get("Deployment", "default", "web")
    assert current is not None
    assert current["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:5"
