"""What the benchmarks deploy, created through the public HTTP API (API.md) like a user would.

Latency: components in org `default` (the stack's data plane `local`). Scale:
one org per data plane, because a webhook deploys to the *first* environment of
its component's org: N data planes that CI reaches by webhook take N orgs, each
with a project, a data plane, an environment on it and an anonymous registry
on the stack's local image registry. Components are spread round-robin over
the planes, each with its own CI token.

Credentials as users hold them: the platform token only creates each org and
its first owner key (`new_org`); that key makes the org's objects, and a
`Target` keeps it to read its deployments (`GET /v1/deployments/{id}` answers
an org key only for its own org).

Requests go through `bench.client.Admin`: concurrent (bounded), with retries
on 503, which the services answer while a dependency catches up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.client import Admin

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """One component CI can deploy: its CI token (which names the component) and where it lives."""

    org: str
    component: str
    token: str = field(repr=False)
    dataplane_id: str
    key: str = field(default="", repr=False)  # an org API key of `org`, to read its deployments


@dataclass
class Plane:
    org: str
    dataplane_id: str
    enrollment_token: str = field(repr=False)
    registry_id: str = ""
    owner: Admin | None = field(default=None, repr=False)  # the org's owner key


async def new_org(platform: Admin, org: str) -> Admin:
    """What only the platform does: create `org` and its first owner key; the owner's client."""
    await platform.call("orchestrator", "POST", "/v1/orgs", {"name": org}, expect=(201, 409))
    key = await platform.call(
        "orchestrator", "POST", f"/v1/orgs/{org}/api-keys", {"name": "bench-owner", "role": "owner"}
    )
    return platform.with_token(str(key["key"]))


async def registry(admin: Admin, org: str, host: str) -> str:
    reg = await admin.call(
        "credentials",
        "POST",
        f"/v1/orgs/{org}/registries",
        {"display_name": "bench registry", "auth": {"type": "anonymous", "host": host}},
    )
    return str(reg["id"])


async def component(
    admin: Admin, org: str, project: str, name: str, *, registry_id: str, image: str, dataplane_id: str
) -> Target:
    await admin.call(
        "orchestrator",
        "POST",
        f"/v1/orgs/{org}/projects/{project}/components",
        {"name": name, "type": "service", "registry_id": registry_id, "image": image, "port": 8080},
    )
    token = await admin.call(
        "webhook_gateway",
        "POST",
        f"/v1/orgs/{org}/projects/{project}/components/{name}/tokens",
        {"name": "bench"},
    )
    return Target(
        org=org, component=name, token=str(token["token"]), dataplane_id=dataplane_id, key=admin.token
    )


async def plane(platform: Admin, org: str, *, registry_host: str) -> Plane:
    admin = await new_org(platform, org)
    await admin.call("orchestrator", "POST", f"/v1/orgs/{org}/projects", {"name": "app"})
    created = await admin.call("orchestrator", "POST", f"/v1/orgs/{org}/dataplanes", {"name": "dp"})
    made = Plane(org, str(created["id"]), str(created["enrollment_token"]), owner=admin)
    await admin.call(
        "orchestrator",
        "POST",
        f"/v1/orgs/{org}/environments",
        {"name": "development", "dataplane_id": made.dataplane_id, "order": 0},
    )
    made.registry_id = await registry(admin, org, registry_host)
    return made


async def gather_all(items: Sequence[T], work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    return list(await asyncio.gather(*(work(item) for item in items)))


async def latency_components(
    admin: Admin, *, count: int, registry_host: str, repository: str, dataplane_id: str, prefix: str = "lat"
) -> list[Target]:
    """`count` service components in org `default`, project `default`, each with a CI token."""
    registry_id = await registry(admin, "default", registry_host)
    image = f"{registry_host}/{repository}:1.0"
    names = [f"{prefix}{i:04d}" for i in range(count)]
    return await gather_all(
        names,
        lambda name: component(
            admin, "default", "default", name, registry_id=registry_id, image=image, dataplane_id=dataplane_id
        ),
    )


async def scale_planes(
    platform: Admin, *, planes: int, components: int, registry_host: str, repository: str, prefix: str
) -> tuple[list[Plane], list[Target]]:
    """`planes` orgs with a data plane each (made with the platform token, then each org's owner
    key), and `components` components spread over them."""
    orgs = [f"{prefix}-{i:04d}" for i in range(planes)]
    made: list[Plane] = await gather_all(orgs, lambda org: plane(platform, org, registry_host=registry_host))
    image = f"{registry_host}/{repository}:1.0"

    async def one(index: int) -> Target:
        home = made[index % planes]
        assert home.owner is not None
        return await component(
            home.owner,
            home.org,
            "app",
            f"c{index:04d}",
            registry_id=home.registry_id,
            image=image,
            dataplane_id=home.dataplane_id,
        )

    targets: list[Target] = await gather_all(list(range(components)), one)
    return made, targets
