"""Part 3a, tenancy: a matrix of requests made with another org's or another component's credentials.

Two orgs, A (the victim) and B (the neighbour), built alike on purpose: both
have project `shop` with a component `api` (A also has `web`), a basic-auth
registry, a data plane and an environment, CI tokens, a signing secret and a
deployment. Same names, different ids: a mix-up between tenants can only show
through ids, so the matrix aims ids at the wrong tenant.

The matrix is generated from every operation each service's `/openapi.json`
documents (health, readiness, metrics and the document itself excepted), so a
new endpoint is in it the day it ships. For every operation, the variants:

- `ci-token:other-org`: B's CI token on the operation, A's objects in the path
  (and, for the webhook, A's image in the body): 401, 403 or 404;
- `ci-token:other-component`: the CI token of A's other component (`web`), A's
  `api` objects: 401, 403 or 404;
- `admin:other-org-id`: the admin token, B's names in the path, an id of A's in
  the path: 403 or 404;
- `admin:other-component-id`: A's path to `web`, an id belonging to `api`
  (tokens): 403 or 404;
- `admin:other-org-reference`: B's path, an id of A's in the body (a data plane
  for an environment, a registry for a component): 403, 404 or a 422 naming
  the field (an unknown reference in a body is a validation error in API.md);
- `admin:leak` (reads): B's own objects; 2xx is expected, and the answer must
  not name anything of A's (ids, org name, repository);
- `owner` (reads): A's own credentials on A's objects must work (2xx), or a
  refusal above would prove nothing.

Any other answer is a breach. Afterwards A's objects must be intact (a refused
DELETE or PATCH that still took effect is a breach too). The admin token itself
is not per org: there is one operator, so it is no tenant credential; the NATS
side of tenancy (an agent publishing another data plane's status) is refused by
nats-server and covered by tests/integration/test_nats_permissions.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.client import Admin, read_body
from chaos.stack import PRIVATE_REGISTRY_USER, ChaosStack

INFRA = ("/healthz", "/readyz", "/metrics", "/openapi.json")
HTTP_SERVICES = ("credentials", "orchestrator", "webhook_gateway", "data_plane_agent")
REFUSED = (401, 403, 404)
REFUSED_BODY_REFERENCE = (403, 404, 422)


@dataclass
class Org:
    name: str
    registry_id: str = ""
    dataplane_id: str = ""
    token_ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict, repr=False)
    deployments: dict[str, str] = field(default_factory=dict)
    enrollment_token: str = field(default="", repr=False)
    signing_secret: str = field(default="", repr=False)  # of the first component (`api`)
    repository: str = ""
    host: str = ""

    def image(self, component: str, tag: str = "1.0") -> str:
        return f"{self.host}/{self.repository}/{component}:{tag}"

    @property
    def markers(self) -> list[str]:
        """What must never appear in an answer about another org."""
        return [
            self.name,
            self.registry_id,
            self.dataplane_id,
            self.repository,
            *self.token_ids.values(),
            *self.deployments.values(),
        ]


@dataclass
class Case:
    service: str
    method: str
    path: str
    variant: str
    status: int
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
        counts: dict[str, int] = {}
        for c in self.cases:
            counts[c.variant] = counts.get(c.variant, 0) + 1
        return counts

    @property
    def tenancy_breaches(self) -> int:
        return len(self.breaches) + len(self.integrity)


async def _make_org(admin: Admin, chaos: ChaosStack, name: str, components: tuple[str, ...]) -> Org:
    org = Org(name=name, repository=f"tenancy/{name}", host=chaos.private_registry.host)
    await admin.call("orchestrator", "POST", "/v1/orgs", {"name": name}, expect=(201, 409))
    await admin.call("orchestrator", "POST", f"/v1/orgs/{name}/projects", {"name": "shop"})
    plane = await admin.call("orchestrator", "POST", f"/v1/orgs/{name}/dataplanes", {"name": "plane"})
    org.dataplane_id, org.enrollment_token = plane["id"], plane["enrollment_token"]
    await admin.call(
        "orchestrator",
        "POST",
        f"/v1/orgs/{name}/environments",
        {"name": "development", "dataplane_id": org.dataplane_id, "order": 0},
    )
    registry = await admin.call(
        "credentials",
        "POST",
        f"/v1/orgs/{name}/registries",
        {
            "display_name": f"{name} private",
            "auth": {
                "type": "basic",
                "host": org.host,
                "username": PRIVATE_REGISTRY_USER,
                "password": chaos.private_password,
            },
        },
    )
    org.registry_id = registry["id"]
    for component in components:
        await admin.call(
            "orchestrator",
            "POST",
            f"/v1/orgs/{name}/projects/shop/components",
            {
                "name": component,
                "type": "service",
                "registry_id": org.registry_id,
                "image": org.image(component),
                "port": 8080,
            },
        )
        base = f"/v1/orgs/{name}/projects/shop/components/{component}"
        token = await admin.call("webhook_gateway", "POST", base + "/tokens", {"name": "tenancy"})
        org.token_ids[component], org.tokens[component] = token["id"], token["token"]
        deployment = await admin.call("orchestrator", "POST", base + "/deployments", {"tag": "1.0"})
        org.deployments[component] = deployment["id"]
    signing = await admin.call(
        "webhook_gateway",
        "POST",
        f"/v1/orgs/{name}/projects/shop/components/{components[0]}/signing-secret",
        {},
    )
    org.signing_secret = signing["secret"]
    return org


def _id_for(path: str, org: Org, component: str) -> str | None:
    """Which of `org`'s ids a `{id}` in `path` names; None when the path has no `{id}`."""
    if "{id}" not in path:
        return None
    if "/registries/{id}" in path:
        return org.registry_id
    if "/dataplanes/{id}" in path:
        return org.dataplane_id
    if "/tokens/{id}" in path:
        return org.token_ids[component]
    if path.endswith("/deployments/{id}"):
        return org.deployments[component]
    raise LookupError(f"the tenancy matrix does not know what {{id}} is in {path}: extend chaos/tenancy.py")


def _fill(path: str, *, org: Org, component: str, id_: str | None) -> str:
    filled = path.replace("{org}", org.name).replace("{project}", "shop").replace("{component}", component)
    if id_ is not None:
        filled = filled.replace("{id}", id_)
    if "{" in filled:
        raise LookupError(f"the tenancy matrix cannot fill {path}: extend chaos/tenancy.py")
    return filled


def _body(method: str, path: str, *, victim: Org, attacker: Org) -> Any:
    """A body that would succeed for the owner: a refusal must come from the tenancy check."""
    key = f"{method} {path}"
    bodies: dict[str, Callable[[], Any]] = {
        "POST /v1/orgs/{org}/registries": lambda: {
            "display_name": "x",
            "auth": {"type": "anonymous", "host": "ghcr.io"},
        },
        "PATCH /v1/orgs/{org}/registries/{id}": lambda: {"display_name": "renamed by another tenant"},
        "POST /v1/orgs/{org}/registries/{id}/test": lambda: {},
        "POST /v1/orgs": lambda: {"name": "t" + secrets.token_hex(6)},
        "POST /v1/orgs/{org}/dataplanes": lambda: {"name": "p" + secrets.token_hex(4)},
        "POST /v1/orgs/{org}/environments": lambda: {
            "name": "e" + secrets.token_hex(4),
            "dataplane_id": victim.dataplane_id,
            "order": 50 + secrets.randbelow(1000),
        },
        "POST /v1/orgs/{org}/projects": lambda: {"name": "p" + secrets.token_hex(4)},
        "POST /v1/orgs/{org}/projects/{project}/components": lambda: {
            "name": "c" + secrets.token_hex(4),
            "type": "service",
            "registry_id": victim.registry_id,
            "image": victim.image("api"),
            "port": 8080,
        },
        "PATCH /v1/orgs/{org}/projects/{project}/components/{component}": lambda: {
            "registry_id": victim.registry_id,
            "image": victim.image("api", "2.0"),
        },
        "POST /v1/orgs/{org}/projects/{project}/components/{component}/deployments": lambda: {
            "image": victim.image("api", "1.0")
        },
        "POST /v1/orgs/{org}/projects/{project}/components/{component}/promotions": lambda: {
            "from": "development",
            "to": "staging",
        },
        "POST /v1/orgs/{org}/projects/{project}/components/{component}/executions": lambda: {},
        "POST /v1/orgs/{org}/projects/{project}/components/{component}/tokens": lambda: {"name": "x"},
        "POST /v1/orgs/{org}/projects/{project}/components/{component}/signing-secret": lambda: {},
        "POST /v1/webhooks/deploy": lambda: {"image": victim.image("api", "1.0")},
        # The credential here is the enrollment token in the body: another kind of token is no such thing.
        "POST /v1/dataplanes/enroll": lambda: {
            "enrollment_token": attacker.tokens["api"],
            "public_key": base64.b64encode(secrets.token_bytes(32)).decode(),
            "version": "tenancy",
        },
    }
    return bodies[key]() if key in bodies else None


# Operations whose body names an id: the reference variant targets those.
BODY_REFERENCES = (
    "POST /v1/orgs/{org}/environments",
    "POST /v1/orgs/{org}/projects/{project}/components",
    "PATCH /v1/orgs/{org}/projects/{project}/components/{component}",
    "POST /v1/orgs/{org}/projects/{project}/components/{component}/deployments",
)


def _signed(secret: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers: a refusal must not come from a missing signature."""
    msg_id = "msg_" + secrets.token_hex(12)
    now = str(int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{now}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": now,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None,
    body: Any,
    signing_secret: str | None = None,
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
        if signing_secret:
            headers.update(_signed(signing_secret, data))
    async with session.request(
        method, url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
    ) as resp:
        payload = await read_body(resp)
        return resp.status, payload if isinstance(payload, str) else json.dumps(payload)


async def run(chaos: ChaosStack, *, say: Callable[[str], None] = print) -> tuple[Matrix, set[str]]:
    """Build the two orgs, run the matrix, check A's objects; returns the matrix and the secrets used."""
    stack = chaos.stack
    urls = {s: stack.url(s) for s in HTTP_SERVICES}
    suffix = secrets.token_hex(3)
    matrix = Matrix()
    async with aiohttp.ClientSession() as session:
        admin = Admin(session, urls=urls, admin_token=stack.admin_token)
        victim = await _make_org(admin, chaos, f"tena-{suffix}", ("api", "web"))
        attacker = await _make_org(admin, chaos, f"tenb-{suffix}", ("api",))
        # Webhooks of a component that requires signatures are signed, whoever's token it is.
        signing = {
            victim.tokens["api"]: victim.signing_secret,
            attacker.tokens["api"]: attacker.signing_secret,
        }
        used = {
            victim.enrollment_token,
            attacker.enrollment_token,
            victim.signing_secret,
            attacker.signing_secret,
            *victim.tokens.values(),
            *attacker.tokens.values(),
        }

        async def case(service: str, method: str, template: str, variant: str, **kw: Any) -> None:
            path = _fill(template, **kw["where"])
            token = kw["token"]
            status, text = await _send(
                session,
                method,
                urls[service] + path,
                token=token,
                body=kw.get("body"),
                signing_secret=signing.get(token),
            )
            expected: tuple[int, ...] = kw["expect"]
            ok = status in expected if expected else 200 <= status < 300
            why = "" if ok else f"answered {status}, expected {expected or '2xx'}"
            leaked = [m for m in kw.get("no_markers", []) if m and m in text]
            if leaked:
                ok, why = False, f"the answer names {leaked[:3]} of another org"
            if status >= 500:
                ok, why = False, f"answered {status}"
            c = Case(service, method, path, variant, status, ok, why if not ok else "")
            matrix.cases.append(c)
            if not ok:
                # The owner's own request failing is no breach, but it voids the refusals around it.
                (matrix.broken_controls if variant == "owner" else matrix.breaches).append(c)

        for service in HTTP_SERVICES:
            async with session.get(urls[service] + "/openapi.json") as resp:
                document = await resp.json()
            for template, operations in document["paths"].items():
                if template in INFRA:
                    continue
                for method_lower, operation in operations.items():
                    method = method_lower.upper()
                    matrix.operations += 1
                    key = f"{method} {template}"
                    security = {k for s in operation.get("security", []) for k in s}
                    is_ci = "ciToken" in security
                    has_org = "{org}" in template
                    body = _body(method, template, victim=victim, attacker=attacker)
                    if operation.get("requestBody") and body is None:
                        raise LookupError(f"no body known for {key}: extend chaos/tenancy.py")
                    own = {"org": victim, "component": "api", "id_": _id_for(template, victim, "api")}
                    # Another org's and another component's CI token, on A's `api` objects.
                    for variant, token in (
                        ("ci-token:other-org", attacker.tokens["api"]),
                        ("ci-token:other-component", victim.tokens["web"]),
                    ):
                        await case(
                            service,
                            method,
                            template,
                            variant,
                            where=own,
                            token=token,
                            body=body,
                            expect=REFUSED,
                        )
                    if is_ci or not has_org:
                        if method == "GET" or is_ci:  # the owner's own request works
                            await case(
                                service,
                                method,
                                template,
                                "owner",
                                where=own,
                                token=victim.tokens["api"] if is_ci else stack.admin_token,
                                body=body,
                                expect=(),
                            )
                        continue
                    theirs = {"org": attacker, "component": "api", "id_": _id_for(template, attacker, "api")}
                    if "{id}" in template:
                        await case(
                            service,
                            method,
                            template,
                            "admin:other-org-id",
                            where={**theirs, "id_": own["id_"]},
                            token=stack.admin_token,
                            body=body,
                            expect=(403, 404),
                        )
                        if "{component}" in template:
                            await case(
                                service,
                                method,
                                template,
                                "admin:other-component-id",
                                where={**own, "component": "web"},
                                token=stack.admin_token,
                                body=body,
                                expect=(403, 404),
                            )
                    if key in BODY_REFERENCES:
                        await case(
                            service,
                            method,
                            template,
                            "admin:other-org-reference",
                            where=theirs,
                            token=stack.admin_token,
                            body=body,
                            expect=REFUSED_BODY_REFERENCE,
                        )
                    if method == "GET":
                        await case(
                            service,
                            method,
                            template,
                            "admin:leak",
                            where=theirs,
                            token=stack.admin_token,
                            expect=(),
                            no_markers=victim.markers,
                        )
                        await case(
                            service, method, template, "owner", where=own, token=stack.admin_token, expect=()
                        )
        matrix.integrity = await _intact(admin, session, urls, victim)
    say(
        f"tenancy: {len(matrix.cases)} requests over {matrix.operations} operations, "
        f"{matrix.tenancy_breaches} breaches"
    )
    return matrix, used


async def _intact(
    admin: Admin, session: aiohttp.ClientSession, urls: dict[str, str], victim: Org
) -> list[str]:
    """A's objects after the matrix: each refused change must really not have happened."""
    problems: list[str] = []
    registry = await admin.call(
        "credentials", "GET", f"/v1/orgs/{victim.name}/registries/{victim.registry_id}"
    )
    if registry["display_name"] != f"{victim.name} private":
        problems.append(f"A's registry was renamed to {registry['display_name']!r}")
    base = f"/v1/orgs/{victim.name}/projects/shop/components"
    for component in ("api", "web"):
        found = await admin.call("orchestrator", "GET", f"{base}/{component}")
        if found["registry_id"] != victim.registry_id or not re.search(victim.repository, found["image"]):
            problems.append(f"A's component {component} was changed: {found['image']}")
        listed = await admin.call("webhook_gateway", "GET", f"{base}/{component}/tokens")
        live = [
            t for t in listed["items"] if t["id"] == victim.token_ids[component] and not t.get("revoked_at")
        ]
        if not live:
            problems.append(f"A's CI token of {component} was revoked")
        status, _ = await _send(
            session,
            "GET",
            f"{urls['webhook_gateway']}/v1/webhooks/deployments/{victim.deployments[component]}",
            token=victim.tokens[component],
            body=None,
        )
        if status != 200:
            problems.append(f"A's CI token of {component} no longer reads its deployment ({status})")
    signing = await admin.call("webhook_gateway", "GET", f"{base}/api/signing-secret")
    if not signing["required"]:
        problems.append("A's signing secret was deleted")
    plane = await admin.call(
        "orchestrator", "GET", f"/v1/orgs/{victim.name}/dataplanes/{victim.dataplane_id}"
    )
    if plane["enrolled"]:
        problems.append("A's data plane was enrolled by someone else")
    return problems
