"""What the benchmarks deploy, created through the public HTTP API (API.md) like a user would.

Latency: components in org `default` (the stack's data plane `local`). Scale:
one org per data plane, because a webhook deploys to the *first* environment of
its component's org: N data planes that CI reaches by webhook take N orgs, each
with a project, a data plane, an environment on it and an anonymous registry
on the stack's local image registry. Components are spread round-robin over
the planes, each with its own CI token.

Requests run concurrently (bounded) with retries on 503, which the services
answer while a dependency catches up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")


class ProvisionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    """One component CI can deploy: its CI token (which names the component) and where it lives."""

    org: str
    component: str
    token: str = field(repr=False)
    dataplane_id: str


@dataclass
class Plane:
    org: str
    dataplane_id: str
    enrollment_token: str = field(repr=False)
    registry_id: str = ""


class Admin:
    """The admin API of the three HTTP services, over one aiohttp session."""

    def __init__(
        self, session: aiohttp.ClientSession, *, urls: dict[str, str], admin_token: str, concurrency: int = 16
    ) -> None:
        self.session = session
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {admin_token}"}
        self.gate = asyncio.Semaphore(concurrency)

    async def call(
        self, service: str, method: str, path: str, body: Any = None, *, expect: Sequence[int] = (200, 201)
    ) -> Any:
        url = self.urls[service] + path
        for attempt in range(20):
            async with (
                self.gate,
                self.session.request(method, url, json=body, headers=self.headers) as resp,
            ):
                payload = await resp.json(content_type=None)
                if resp.status in expect:
                    return payload
                if resp.status != 503:
                    raise ProvisionError(f"{method} {path} answered {resp.status}: {payload}")
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        raise ProvisionError(f"{method} {path} kept answering 503")

    async def registry(self, org: str, host: str) -> str:
        reg = await self.call(
            "credentials",
            "POST",
            f"/v1/orgs/{org}/registries",
            {"display_name": "bench registry", "auth": {"type": "anonymous", "host": host}},
        )
        return str(reg["id"])

    async def component(
        self, org: str, project: str, name: str, *, registry_id: str, image: str, dataplane_id: str
    ) -> Target:
        await self.call(
            "orchestrator",
            "POST",
            f"/v1/orgs/{org}/projects/{project}/components",
            {"name": name, "type": "service", "registry_id": registry_id, "image": image, "port": 8080},
        )
        token = await self.call(
            "webhook_gateway",
            "POST",
            f"/v1/orgs/{org}/projects/{project}/components/{name}/tokens",
            {"name": "bench"},
        )
        return Target(org=org, component=name, token=str(token["token"]), dataplane_id=dataplane_id)

    async def plane(self, org: str, *, registry_host: str) -> Plane:
        await self.call("orchestrator", "POST", "/v1/orgs", {"name": org})
        await self.call("orchestrator", "POST", f"/v1/orgs/{org}/projects", {"name": "app"})
        created = await self.call("orchestrator", "POST", f"/v1/orgs/{org}/dataplanes", {"name": "dp"})
        plane = Plane(org, str(created["id"]), str(created["enrollment_token"]))
        await self.call(
            "orchestrator",
            "POST",
            f"/v1/orgs/{org}/environments",
            {"name": "development", "dataplane_id": plane.dataplane_id, "order": 0},
        )
        plane.registry_id = await self.registry(org, registry_host)
        return plane


async def gather_all(items: Sequence[T], work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    return list(await asyncio.gather(*(work(item) for item in items)))


async def latency_components(
    admin: Admin, *, count: int, registry_host: str, repository: str, dataplane_id: str, prefix: str = "lat"
) -> list[Target]:
    """`count` service components in org `default`, project `default`, each with a CI token."""
    registry_id = await admin.registry("default", registry_host)
    image = f"{registry_host}/{repository}:1.0"
    names = [f"{prefix}{i:04d}" for i in range(count)]
    return await gather_all(
        names,
        lambda name: admin.component(
            "default", "default", name, registry_id=registry_id, image=image, dataplane_id=dataplane_id
        ),
    )


async def scale_planes(
    admin: Admin, *, planes: int, components: int, registry_host: str, repository: str, prefix: str
) -> tuple[list[Plane], list[Target]]:
    """`planes` orgs with a data plane each, and `components` components spread over them."""
    orgs = [f"{prefix}-{i:04d}" for i in range(planes)]
    made: list[Plane] = await gather_all(orgs, lambda org: admin.plane(org, registry_host=registry_host))
    image = f"{registry_host}/{repository}:1.0"

    async def one(index: int) -> Target:
        plane = made[index % planes]
        return await admin.component(
            plane.org,
            "app",
            f"c{index:04d}",
            registry_id=plane.registry_id,
            image=image,
            dataplane_id=plane.dataplane_id,
        )

    targets: list[Target] = await gather_all(list(range(components)), one)
    return made, targets
