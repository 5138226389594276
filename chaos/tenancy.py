"""Part 3a, tenancy: the matrix of chaos/matrix.py, sent to the real services, breaches counted.

Two orgs, A (the victim) and B (the neighbour), built alike on purpose (`build`): project `shop`
with components `api` (a service), `job` (a manual task) and `victim`, two registries (the
components' and an unused `victim`), a data plane with two environments, CI tokens, a deployment,
an execution and API keys. Same names, different ids: a mix-up between tenants can only show
through ids, so ids are what the matrix aims at the wrong tenant. Only the platform token creates
the orgs and their first owner key; that key makes everything else, as a user would. A's other
callers: a developer, a viewer, a revoked key (used once, so that it was cached, then revoked) and
an expired key (the API allows at least one day, so it is made with `expires_in_days: 1` and its
`expires_at` moved into the past in the orchestrator's database), no key at all, and A's CI token.

The requests run in three waves, each concurrent (bounded): every read; then every change that
must be refused, aimed at the real objects (a DELETE at the `victim` objects); then every change
that must be allowed, with the platform's same request beside it as the comparison point (a
DELETE each on an object made for it, so that one allowed cell cannot spoil another's).

A breach is a 2xx where the rules say refuse, a 2xx to an org key that names anything of the other
org, or a refused change that took effect anyway (the `victim` objects are checked afterwards:
`integrity`). An answer that differs from the rules without a 2xx (say a 403 for a 404) is no
breach but a `broken_control`: the matrix then proves less than it says, and the tests fail on it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from bench.client import Admin, read_body
from bench.provision import new_org
from chaos import matrix
from chaos.matrix import Caller, Cell, Target
from chaos.stack import PRIVATE_REGISTRY_USER, ChaosStack
from libs.devstack.stack import Stack

HTTP_SERVICES = ("credentials", "orchestrator", "webhook_gateway", "data_plane_agent")
PROJECT = "shop"
CONCURRENCY = 16
_ORDERS = itertools.count(10)


@dataclass
class Tenant:
    org: str
    host: str
    owner: Admin = field(repr=False)
    ids: dict[str, str] = field(default_factory=dict)  # the path segment before `{id}` → that id
    ci_token: str = field(default="", repr=False)
    secrets: set[str] = field(default_factory=set, repr=False)

    def image(self, component: str = "api", tag: str = "1.0") -> str:
        return f"{self.host}/matrix/{self.org}/{component}:{tag}"

    @property
    def markers(self) -> list[str]:
        """What must never appear in an answer to another org's key."""
        return [self.org, f"matrix/{self.org}/", *self.ids.values()]


@dataclass
class Case:
    service: str
    method: str
    path: str
    caller: str
    target: str
    status: int
    expected: str
    ok: bool
    why: str = ""


@dataclass
class Matrix:
    cases: list[Case] = field(default_factory=list)
    breaches: list[Case] = field(default_factory=list)
    broken_controls: list[Case] = field(default_factory=list)
    operations: int = 0
    integrity: list[str] = field(default_factory=list)

    @property
    def variants(self) -> dict[str, int]:
        """Requests by caller kind (and `mixed` for the wrong org's ids)."""
        return dict(Counter(c.caller if c.target != "mixed" else f"{c.caller}:mixed" for c in self.cases))

    @property
    def tenancy_breaches(self) -> int:
        return len(self.breaches) + len(self.integrity)

    @property
    def trivially_refused(self) -> dict[str, int]:
        """401s by caller: refusals before any rule was applied (the credential was not taken for
        one). Right for no, revoked and expired keys; for any other caller each one is a cell
        that proves nothing about tenancy, so they are counted apart from the real refusals."""
        return dict(Counter(c.caller for c in self.cases if c.status == 401))

    @property
    def refused_by_rule(self) -> dict[str, int]:
        """403s and 404s by caller: refusals of a caller who was recognised, by the rules."""
        return dict(Counter(c.caller for c in self.cases if c.status in (403, 404)))


def _component(template: str, override: str | None) -> str:
    if override is not None:
        return override
    return "job" if "/executions" in template else "api"


def fill(
    template: str, *, home: Tenant, ids: Tenant, component: str | None = None, id_: str | None = None
) -> str:
    """A path of `home`'s org with `ids`' ids (the same tenant, except for `mixed`)."""
    path = (
        template.replace("{org}", home.org)
        .replace("{project}", PROJECT)
        .replace("{component}", _component(template, component))
        .replace("{environment}", "development")
    )
    if "{id}" in path:
        segment = path.split("/{id}")[0].rsplit("/", 1)[1]
        if id_ is None and segment not in ids.ids:
            raise LookupError(
                f"the tenancy matrix does not know what {{id}} is in {template}: extend chaos/tenancy.py"
            )
        path = path.replace("{id}", id_ or ids.ids[segment])
    if "{" in path:
        raise LookupError(f"the tenancy matrix cannot fill {template}: extend chaos/tenancy.py")
    return path


def body(operation: matrix.Operation, *, home: Tenant, ref: Tenant) -> Any:
    """A body that succeeds for a caller allowed to send it: a refusal must come from who asks.

    `ref` is whose ids the body names (`home` itself, except for `mixed`). Names are fresh each
    time, so that the platform's comparison request and the key's do not collide."""
    if not operation.has_body:
        return None
    n = secrets.token_hex(4)
    component = "/v1/orgs/{org}/projects/{project}/components"
    bodies: dict[str, Callable[[], Any]] = {
        "POST /v1/orgs": lambda: {"name": f"mx-{n}"},
        "POST /v1/orgs/{org}/registries": lambda: {
            "display_name": f"m-{n}",
            "auth": {"type": "anonymous", "host": home.host},
        },
        "PATCH /v1/orgs/{org}/registries/{id}": lambda: {"display_name": "victim"},  # its own name
        "POST /v1/orgs/{org}/registries/{id}/test": lambda: {},
        "POST /v1/orgs/{org}/dataplanes": lambda: {"name": f"p-{n}"},
        "POST /v1/orgs/{org}/environments": lambda: {
            "name": f"e-{n}",
            "dataplane_id": ref.ids["dataplanes"],
            "order": next(_ORDERS),
        },
        "POST /v1/orgs/{org}/projects": lambda: {"name": f"p-{n}"},
        "POST /v1/orgs/{org}/api-keys": lambda: {"name": f"m-{n}", "role": "viewer"},
        f"POST {component}": lambda: {
            "name": f"c-{n}",
            "type": "service",
            "registry_id": ref.ids["registries"],
            "image": ref.image(),
            "port": 8080,
        },
        f"PATCH {component}/{{component}}": lambda: {
            "registry_id": ref.ids["registries"],
            "image": ref.image(),
        },
        f"POST {component}/{{component}}/deployments": lambda: {"image": ref.image()},
        f"POST {component}/{{component}}/promotions": lambda: {"from": "development", "to": "staging"},
        f"POST {component}/{{component}}/executions": lambda: {},
        f"POST {component}/{{component}}/tokens": lambda: {"name": f"m-{n}"},
        f"PUT {component}/{{component}}/environments/{{environment}}/config": lambda: {"replicas": 1},
    }
    if operation.key not in bodies:
        raise LookupError(f"no body known for {operation.key}: extend chaos/tenancy.py")
    return bodies[operation.key]()


async def _component_of(owner: Admin, tenant: Tenant, *, kind: str = "service") -> str:
    name = f"d-{secrets.token_hex(4)}"
    spec: dict[str, Any] = {"name": name, "type": kind, "registry_id": tenant.ids["registries"]}
    spec["image"] = tenant.image(name)
    if kind == "service":
        spec["port"] = 8080
    await owner.call("orchestrator", "POST", f"/v1/orgs/{tenant.org}/projects/{PROJECT}/components", spec)
    return name


async def disposable(operation: matrix.Operation, tenant: Tenant) -> dict[str, str]:
    """An object made for one DELETE, so that each allowed DELETE removes something of its own."""
    owner, org, t = tenant.owner, tenant.org, operation.template
    base = f"/v1/orgs/{org}/projects/{PROJECT}/components"
    if t.endswith("/components/{component}"):
        return {"component": await _component_of(owner, tenant)}
    if t.endswith("/signing-secret"):
        name = await _component_of(owner, tenant)
        await owner.call("webhook_gateway", "POST", f"{base}/{name}/signing-secret")
        return {"component": name}
    if t.endswith("/tokens/{id}"):
        token = await owner.call("webhook_gateway", "POST", f"{base}/api/tokens", {"name": "disposable"})
        tenant.secrets.add(token["token"])
        return {"id": token["id"]}
    if t.endswith("/api-keys/{id}"):
        key = await owner.call(
            "orchestrator", "POST", f"/v1/orgs/{org}/api-keys", {"name": "d", "role": "viewer"}
        )
        tenant.secrets.add(key["key"])
        return {"id": key["id"]}
    if t.endswith("/registries/{id}"):
        auth = {"type": "anonymous", "host": tenant.host}
        registry = await owner.call(
            "credentials", "POST", f"/v1/orgs/{org}/registries", {"display_name": "d", "auth": auth}
        )
        return {"id": registry["id"]}
    if t.endswith("/dataplanes/{id}"):
        plane = await owner.call(
            "orchestrator", "POST", f"/v1/orgs/{org}/dataplanes", {"name": "d" + secrets.token_hex(4)}
        )
        tenant.secrets.add(plane["enrollment_token"])
        return {"id": plane["id"]}
    raise LookupError(
        f"the tenancy matrix cannot make an object for {operation.key} to delete: extend chaos/tenancy.py"
    )


async def build(platform: Admin, name: str, *, host: str, auth: dict[str, str]) -> Tenant:
    """An org as a user sets it up; the platform token only creates it and its first owner key."""
    owner = await new_org(platform, name)
    tenant = Tenant(org=name, host=host, owner=owner)
    tenant.secrets.add(owner.token)
    org = f"/v1/orgs/{name}"
    await owner.call("orchestrator", "POST", f"{org}/projects", {"name": PROJECT})
    plane = await owner.call("orchestrator", "POST", f"{org}/dataplanes", {"name": "plane"})
    tenant.ids["dataplanes"] = plane["id"]
    tenant.secrets.add(plane["enrollment_token"])
    for order, env in enumerate(("development", "staging")):
        spec = {"name": env, "dataplane_id": plane["id"], "order": order}
        await owner.call("orchestrator", "POST", f"{org}/environments", spec)
    used = await owner.call(
        "credentials",
        "POST",
        f"{org}/registries",
        {"display_name": f"{name} main", "auth": {**auth, "host": host}},
    )
    tenant.ids["registries"] = used["id"]
    for component, kind in (("api", "service"), ("job", "manual-task"), ("victim", "service")):
        spec = {"name": component, "type": kind, "registry_id": used["id"], "image": tenant.image(component)}
        if kind == "service":
            spec["port"] = 8080
        await owner.call("orchestrator", "POST", f"{org}/projects/{PROJECT}/components", spec)
    # The registry an id in a path names is one no component uses: a DELETE that gets through shows.
    victim = await owner.call(
        "credentials",
        "POST",
        f"{org}/registries",
        {"display_name": "victim", "auth": {"type": "anonymous", "host": host}},
    )
    tenant.ids["registries"] = victim["id"]
    tenant.ids["main-registry"] = used["id"]
    base = f"{org}/projects/{PROJECT}/components"
    signing = await owner.call("webhook_gateway", "POST", f"{base}/victim/signing-secret")
    tenant.secrets.add(signing["secret"])
    for label in ("ci", "tokens"):  # `ci` is the CI token the matrix calls with; `tokens` its victim
        token = await owner.call("webhook_gateway", "POST", f"{base}/api/tokens", {"name": label})
        tenant.ids[label] = token["id"]
        tenant.secrets.add(token["token"])
        if label == "ci":
            tenant.ci_token = token["token"]
    deployment = await owner.call("orchestrator", "POST", f"{base}/api/deployments", {"tag": "1.0"})
    tenant.ids["deployments"] = deployment["id"]
    execution = await owner.call("orchestrator", "POST", f"{base}/job/executions", {}, expect=(202, 409))
    if isinstance(execution, dict) and execution.get("id"):
        tenant.ids["executions"] = execution["id"]
    key = await owner.call("orchestrator", "POST", f"{org}/api-keys", {"name": "victim", "role": "viewer"})
    tenant.ids["api-keys"] = key["id"]
    tenant.secrets.add(key["key"])
    return tenant


async def _expire(dsn: str, key_id: str) -> None:
    """Move a key's expiry into the past: the API allows no expiry shorter than a day."""
    conn = await asyncpg.connect(dsn)
    try:
        done = await conn.execute(
            "UPDATE orchestrator.api_keys SET expires_at = now() - interval '1 hour' WHERE id = $1", key_id
        )
    finally:
        await conn.close()
    if done != "UPDATE 1":
        raise RuntimeError(f"could not expire API key {key_id}: {done}")


async def callers(stack: Stack, a: Tenant, b: Tenant) -> dict[Caller, str | None]:
    """The credential of each caller kind of `matrix.CALLERS`."""
    keys = f"/v1/orgs/{a.org}/api-keys"
    made: dict[str, dict[str, Any]] = {}
    for label, role in (("developer", "developer"), ("viewer", "viewer"), ("revoked", "viewer")):
        made[label] = await a.owner.call("orchestrator", "POST", keys, {"name": label, "role": role})
    spec = {"name": "expired", "role": "viewer", "expires_in_days": 1}
    made["expired"] = await a.owner.call("orchestrator", "POST", keys, spec)
    await _expire(stack.postgres.dsn, made["expired"]["id"])
    revoked = a.owner.with_token(made["revoked"]["key"])
    for service in ("orchestrator", "credentials"):  # cached where it was used, then revoked
        path = (
            f"/v1/orgs/{a.org}/environments" if service == "orchestrator" else f"/v1/orgs/{a.org}/registries"
        )
        await revoked.call(service, "GET", path)
    await a.owner.call("orchestrator", "DELETE", f"{keys}/{made['revoked']['id']}", expect=(204,))
    a.secrets |= {m["key"] for m in made.values()}
    return {
        "platform": stack.admin_token,
        "owner": a.owner.token,
        "developer": made["developer"]["key"],
        "viewer": made["viewer"]["key"],
        "owner-b": b.owner.token,
        "revoked": made["revoked"]["key"],
        "expired": made["expired"]["key"],
        "none": None,
        "ci-token": a.ci_token,
    }


@dataclass
class Runner:
    """Sends cells and judges their answers (see the module docstring for the waves)."""

    session: aiohttp.ClientSession
    urls: dict[str, str]
    tenants: dict[str, Tenant]
    tokens: dict[Caller, str | None]
    result: Matrix = field(default_factory=Matrix)
    baseline: dict[tuple[matrix.Operation, Target], int] = field(default_factory=dict)
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CONCURRENCY))

    def where(self, cell: Cell) -> tuple[Tenant, Tenant]:
        """(whose path, whose ids): B's path with A's ids for `mixed`."""
        a, b = self.tenants["a"], self.tenants["b"]
        if cell.target == "mixed":
            return b, a
        return (b, b) if cell.target == "b" else (a, a)

    async def send(self, cell: Cell) -> None:
        home, ids = self.where(cell)
        op = cell.operation
        component: str | None = None
        id_: str | None = None
        if op.method == "DELETE":
            if cell.expected is None:  # allowed: an object of its own to delete
                made = await disposable(op, home)
                component, id_ = made.get("component"), made.get("id")
            elif "{id}" not in op.template:
                component = "victim"
        path = fill(op.template, home=home, ids=ids, component=component, id_=id_)
        headers = {"X-Request-Id": f"matrix-{secrets.token_hex(6)}"}
        token = self.tokens[cell.caller]
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = body(op, home=home, ref=ids)
        async with (
            self.gate,
            self.session.request(
                op.method,
                self.urls[op.service] + path,
                json=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp,
        ):
            answer = await read_body(resp)
            status = resp.status
        text = answer if isinstance(answer, str) else json.dumps(answer)
        self.judge(cell, path, status, text)

    def judge(self, cell: Cell, path: str, status: int, text: str) -> None:
        want = cell.expected
        if want is None and cell.caller != "platform":
            want = (self.baseline[(cell.operation, cell.target)],)
        if cell.caller == "platform" and cell.expected is None:
            self.baseline[(cell.operation, cell.target)] = status
        ok, why = True, ""
        if status >= 500:
            ok, why = False, f"answered {status}"
        elif want is not None and status not in want:
            ok, why = False, f"answered {status}, expected {'/'.join(map(str, want))}"
        breach = not ok and 200 <= status < 300 and cell.expected is not None
        if 200 <= status < 300 and cell.caller in ("owner", "developer", "viewer", "owner-b"):
            other = self.tenants["a" if matrix.caller_org(cell.caller) == "b" else "b"]
            leaked = [] if path.endswith("/audit") else [m for m in other.markers if m in text]
            if leaked:
                ok, breach, why = False, True, f"the answer names {leaked[:3]} of the other org"
        op = cell.operation
        shown = "/".join(map(str, want)) if want else "platform's"
        case = Case(op.service, op.method, path, cell.caller, cell.target, status, shown, ok, why)
        self.result.cases.append(case)
        if breach:
            self.result.breaches.append(case)
        elif not ok:
            self.result.broken_controls.append(case)

    async def wave(self, cells: list[Cell]) -> None:
        """Platform comparison requests first, then the rest: each group concurrent."""
        first = [c for c in cells if c.caller == "platform" and c.expected is None]
        await asyncio.gather(*(self.send(c) for c in first))
        await asyncio.gather(*(self.send(c) for c in cells if c not in first))

    async def run(self, documents: dict[str, dict[str, Any]]) -> Matrix:
        cells = list(matrix.cells(documents))
        self.result.operations = len({c.operation for c in cells})
        await self.wave([c for c in cells if not c.changes])
        await self.wave([c for c in cells if c.changes and c.expected is not None])
        await self.wave([c for c in cells if c.changes and c.expected is None])
        return self.result


async def intact(tenant: Tenant) -> list[str]:
    """The objects refused DELETEs and PATCHes aimed at: each must still be as it was."""
    owner, org = tenant.owner, f"/v1/orgs/{tenant.org}"
    base = f"{org}/projects/{PROJECT}/components"
    problems: list[str] = []
    registry = await owner.call(
        "credentials", "GET", f"{org}/registries/{tenant.ids['registries']}", expect=(200, 404)
    )
    if not registry or registry.get("display_name") != "victim":
        problems.append(f"{tenant.org}'s victim registry was deleted or renamed: {registry}")
    status = await owner.call("orchestrator", "GET", f"{base}/victim", expect=(200, 404))
    if not status or status.get("name") != "victim":
        problems.append(f"{tenant.org}'s victim component was deleted")
    else:
        signing = await owner.call("webhook_gateway", "GET", f"{base}/victim/signing-secret")
        if not signing.get("required"):
            problems.append(f"{tenant.org}'s signing secret was deleted")
    tokens = await owner.call("webhook_gateway", "GET", f"{base}/api/tokens")
    if not [t for t in tokens["items"] if t["id"] == tenant.ids["tokens"] and not t.get("revoked_at")]:
        problems.append(f"{tenant.org}'s victim CI token was revoked")
    keys = await owner.call("orchestrator", "GET", f"{org}/api-keys")
    if not [k for k in keys["items"] if k["id"] == tenant.ids["api-keys"] and not k.get("revoked_at")]:
        problems.append(f"{tenant.org}'s victim API key was revoked")
    return problems


async def run_on(
    stack: Stack,
    *,
    host: str,
    auth: dict[str, str],
    say: Callable[[str], None] = print,
    services: tuple[str, ...] = HTTP_SERVICES,
    urls: dict[str, str] | None = None,
) -> tuple[Matrix, set[str]]:
    """Build A and B on `stack` (registries on `host` with `auth`), run the matrix, check A and B.

    `services` limits the matrix to those services' operations; `urls` sends a service's cells
    elsewhere (a planted leaky proxy, to show that the matrix catches one). Setting up the orgs
    and checking them afterwards always goes to the stack itself."""
    urls = {s: stack.url(s) for s in HTTP_SERVICES} | (urls or {})
    suffix = secrets.token_hex(3)
    async with aiohttp.ClientSession() as session:
        platform = Admin.for_stack(session, stack, platform=True)
        a = await build(platform, f"mxa-{suffix}", host=host, auth=auth)
        b = await build(platform, f"mxb-{suffix}", host=host, auth=auth)
        tokens = await callers(stack, a, b)
        documents = {}
        for service in services:
            async with session.get(stack.url(service) + "/openapi.json") as resp:
                documents[service] = await resp.json()
        runner = Runner(session, urls, {"a": a, "b": b}, tokens)
        result = await runner.run(documents)
        result.integrity = await intact(a) + await intact(b)
    say(
        f"tenancy: {len(result.cases)} requests over {result.operations} operations and "
        f"{len(matrix.CALLERS)} kinds of caller, {result.tenancy_breaches} breaches, "
        f"{len(result.broken_controls)} answers against the rules; refused by rule "
        f"{result.refused_by_rule}, trivially (401) {result.trivially_refused}"
    )
    return result, a.secrets | b.secrets


async def run(chaos: ChaosStack, *, say: Callable[[str], None] = print) -> tuple[Matrix, set[str]]:
    """`make chaos`'s part: the matrix on the chaos stack, the components on its private registry."""
    auth = {"type": "basic", "username": PRIVATE_REGISTRY_USER, "password": chaos.private_password}
    return await run_on(chaos.stack, host=chaos.private_registry.host, auth=auth, say=say)
