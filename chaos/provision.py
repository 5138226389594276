"""What the crash run deploys, created through the public API like a user would.

Components `c0000…` in project `chaos` of org `default` (the stack's data plane
`local`), each with its own CI token and a few tags pushed to its registry:
- every fifth component pulls from the private (basic auth) registry, so its
  deploys need a pull secret from Vault;
- every tenth requires signed webhooks (Standard Webhooks), so the gateway
  needs its signing secret from Vault (cached) on the webhook path.
Every secret created here is remembered in `Fleet.secrets` for the scan.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import aiohttp

from bench.client import Admin
from chaos.stack import PRIVATE_REGISTRY_USER, ChaosStack

ORG = "default"
PROJECT = "chaos"


@dataclass
class Target:
    """One component CI deploys: its token, its registry and the digest of each tag pushed."""

    name: str
    token: str = field(repr=False)
    host: str
    repository: str
    private: bool
    signing_secret: str | None = field(default=None, repr=False)
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def tags(self) -> list[str]:
        return sorted(self.digests)

    def pinned(self, tag: str) -> str:
        return f"{self.host}/{self.repository}@{self.digests[tag]}"

    def signature_headers(self, body: bytes) -> dict[str, str]:
        """Standard Webhooks headers for `body` (a new webhook-id per attempt, as senders do)."""
        if self.signing_secret is None:
            return {}
        msg_id = "msg_" + uuid.uuid4().hex
        now = str(int(time.time()))
        key = base64.b64decode(self.signing_secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{msg_id}.{now}.".encode() + body, hashlib.sha256).digest()
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": now,
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        }


@dataclass
class Fleet:
    targets: list[Target]
    registry_ids: dict[str, str]
    secrets: set[str] = field(default_factory=set, repr=False)


def _push_all(chaos: ChaosStack, targets: list[Target], tags: int) -> None:
    def push(job: tuple[Target, str]) -> None:
        target, tag = job
        if target.private:
            digest = chaos.private_registry.push_image(
                target.repository, tag, username=PRIVATE_REGISTRY_USER, password=chaos.private_password
            )
        else:
            digest = chaos.stack.registry.push_image(target.repository, tag)
        target.digests[tag] = digest

    jobs = [(t, f"1.{k}") for t in targets for k in range(tags)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(push, jobs))


async def provision(
    chaos: ChaosStack, *, components: int, tags: int, prefix: str = "c", project: str = PROJECT
) -> Fleet:
    stack = chaos.stack
    async with aiohttp.ClientSession() as session:
        admin = Admin.for_stack(session, stack)
        await admin.call(
            "orchestrator", "POST", f"/v1/orgs/{ORG}/projects", {"name": project}, expect=(201, 409)
        )
        anonymous = await admin.call(
            "credentials",
            "POST",
            f"/v1/orgs/{ORG}/registries",
            {"display_name": f"{project} public", "auth": {"type": "anonymous", "host": stack.registry.host}},
        )
        private = await admin.call(
            "credentials",
            "POST",
            f"/v1/orgs/{ORG}/registries",
            {
                "display_name": f"{project} private",
                "auth": {
                    "type": "basic",
                    "host": chaos.private_registry.host,
                    "username": PRIVATE_REGISTRY_USER,
                    "password": chaos.private_password,
                },
            },
        )
        registry_ids = {"anonymous": anonymous["id"], "private": private["id"]}
        targets = [
            Target(
                name=f"{prefix}{i:04d}",
                token="",
                host=chaos.private_registry.host if i % 5 == 1 else stack.registry.host,
                repository=f"{project}/{prefix}{i:04d}",
                private=i % 5 == 1,
            )
            for i in range(components)
        ]
        await asyncio.to_thread(_push_all, chaos, targets, tags)
        secrets = {chaos.private_password, stack.admin_token, stack.vault.token, stack.org_key or ""} - {""}
        if stack.state.get("enrollment_token"):
            secrets.add(stack.state["enrollment_token"])

        async def one(index: int, target: Target) -> None:
            base = f"/v1/orgs/{ORG}/projects/{project}/components/{target.name}"
            await admin.call(
                "orchestrator",
                "POST",
                f"/v1/orgs/{ORG}/projects/{project}/components",
                {
                    "name": target.name,
                    "type": "service",
                    "registry_id": registry_ids["private" if target.private else "anonymous"],
                    "image": f"{target.host}/{target.repository}:1.0",
                    "port": 8080,
                },
            )
            token = await admin.call("webhook_gateway", "POST", base + "/tokens", {"name": "chaos"})
            target.token = token["token"]
            if index % 10 == 3:
                signing = await admin.call("webhook_gateway", "POST", base + "/signing-secret", {})
                target.signing_secret = signing["secret"]

        await asyncio.gather(*(one(i, t) for i, t in enumerate(targets)))
    for target in targets:
        secrets.add(target.token)
        if target.signing_secret:
            secrets.add(target.signing_secret)
    return Fleet(targets=targets, registry_ids=registry_ids, secrets=secrets)
