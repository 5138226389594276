"""The rendered install applies to a Kubernetes API server and reads back as written.

`make manifests` output for a kind/k3d cluster (overlays/local: the control plane, NATS and the
agent) and the agent alone (what a data-plane cluster gets) are applied the way `kubectl apply`
does it: create, or patch what exists, every object at the URL discovery gives for its kind. The
sandbox API server runs no controllers, so nothing starts; what is checked is that the API server
takes every object, in the order of the file, and keeps what was sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from deploy.kubernetes import render
from libs.devstack.sandbox import SandboxCluster

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
async def cluster() -> AsyncIterator[SandboxCluster]:
    async with SandboxCluster() as sandbox:
        yield sandbox


class Applier:
    """kubectl apply in miniature: discovery for the URL, then create or merge-patch."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.plurals: dict[tuple[str, str], tuple[str, bool]] = {}

    async def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        if (api_version, kind) not in self.plurals:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            async with self.session.get(self.base + path) as response:
                assert response.status == 200, f"{api_version} is not served"
                for resource in (await response.json())["resources"]:
                    if "/" not in resource["name"]:
                        key = (api_version, resource["kind"])
                        self.plurals[key] = (resource["name"], resource["namespaced"])
        return self.plurals[(api_version, kind)]

    async def url(self, obj: dict[str, Any], *, named: bool) -> str:
        plural, namespaced = await self._resource(obj["apiVersion"], obj["kind"])
        root = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
        namespace = f"/namespaces/{obj['metadata']['namespace']}" if namespaced else ""
        name = f"/{obj['metadata']['name']}" if named else ""
        return f"{self.base}{root}{namespace}/{plural}{name}"

    async def apply(self, obj: dict[str, Any]) -> int:
        async with self.session.post(await self.url(obj, named=False), json=obj) as response:
            if response.status != 409:
                return response.status
        async with self.session.patch(await self.url(obj, named=True), json=obj, headers=MERGE) as response:
            return response.status

    async def read(self, obj: dict[str, Any]) -> dict[str, Any]:
        async with self.session.get(await self.url(obj, named=True)) as response:
            assert response.status == 200, (obj["kind"], obj["metadata"]["name"], response.status)
            body: dict[str, Any] = await response.json()
            return body


def contains(live: Any, sent: Any) -> bool:
    """Everything sent is in the live object; the API server may add defaults beside it."""
    if isinstance(sent, dict):
        return isinstance(live, dict) and all(contains(live.get(k), v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(live, list) and len(live) == len(sent) and all(map(contains, live, sent))
    return bool(live == sent)


@pytest.mark.parametrize("name", ["local", "agent"])
async def test_the_rendered_install_applies_and_reads_back(cluster: SandboxCluster, name: str) -> None:
    objects = render.ordered(render.render(render.KUSTOMIZATIONS[name]))
    async with aiohttp.ClientSession() as session:
        applier = Applier(session, cluster.url)
        for obj in objects:
            status = await applier.apply(obj)
            assert status in (200, 201), (obj["kind"], obj["metadata"]["name"], status)
        for obj in objects:
            live = await applier.read(obj)
            for part in ("spec", "data", "rules", "roleRef", "subjects"):
                if part in obj:
                    assert contains(live[part], obj[part]), (obj["kind"], obj["metadata"]["name"], part)
            assert obj["metadata"].get("labels", {}).items() <= live["metadata"].get("labels", {}).items()
        # Applying again changes nothing and is refused nowhere (an upgrade re-applies the same file).
        before = {render.identity(o): (await applier.read(o))["metadata"]["resourceVersion"] for o in objects}
        for obj in objects:
            assert await applier.apply(obj) == 200, (obj["kind"], obj["metadata"]["name"])
        after = {render.identity(o): (await applier.read(o))["metadata"]["resourceVersion"] for o in objects}
        assert after == before
        kinds = {o["kind"] for o in objects}
    assert len(before) == len(objects)
    if name == "local":
        assert {"Deployment", "StatefulSet", "Ingress", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
        deployments = [o for o in objects if o["kind"] == "Deployment"]
        assert {d["metadata"]["name"] for d in deployments} >= {
            "credentials",
            "webhook-gateway",
            "orchestrator",
            "console",
            "landfall-agent",
        }
