"""Provisioning through the public HTTP API, as a user would: the `Stack`'s second half.

`Stack` (libs/devstack/stack.py) starts processes; this mixin makes what API.md promises of the
local stack (org `default`, its owner key `LANDFALL_ORG_KEY`, project `default`, data plane `local`,
the three environments, the demo component) and writes `.landfall/local.env`.

Subtle: the admin token is used only where only the platform may act (creating an org and its
first owner key); everything else goes with the org key, so the local stack exercises the same
role checks a user meets.
"""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path
from typing import Any

from libs.devstack.processes import StackError, http
from libs.devstack.servers import DockerRegistry, NatsServer, OpenBaoServer, PostgresServer
from libs.devstack.servers.nats_cluster import NatsCluster
from libs.runtime.natsauth import NatsAuthConfig

ORG = "default"
ORG_KEY_NAME = "local-owner"


class Provisioning:
    """What the stack provisions; `Stack` supplies the attributes and addresses declared here."""

    root: Path
    state: dict[str, Any]
    admin_token: str
    org_key: str | None
    kubeconfig: Path | None
    registry: DockerRegistry
    nats: NatsServer | NatsCluster  # a cluster's `url` lists every node
    postgres: PostgresServer
    vault: OpenBaoServer
    nats_auth: NatsAuthConfig
    nats_ca_file: Path | None  # the stack's own CA when NATS speaks TLS

    def url(self, service: str) -> str:
        raise NotImplementedError

    def urls(self, service: str) -> list[str]:
        raise NotImplementedError

    @property
    def front_url(self) -> str:
        raise NotImplementedError

    @property
    def sandbox_url(self) -> str:
        raise NotImplementedError

    def _save(self) -> None:
        raise NotImplementedError

    def _say(self, line: str) -> None:
        raise NotImplementedError

    def api(
        self,
        service: str,
        method: str,
        path: str,
        body: Any = None,
        expect: tuple[int, ...] = (200, 201),
        *,
        token: str | None = None,
        platform: bool = False,
    ) -> Any:
        """A call as a user makes it: with `token`, else the org key of `default` once it exists;
        with the admin token only when `platform` (creating orgs and their first key) or before."""
        bearer = token or (self.admin_token if platform else self.org_key or self.admin_token)
        status, payload = http(method, self.url(service) + path, token=bearer, body=body)
        if status not in expect:
            raise StackError(f"{method} {path} answered {status}: {payload}")
        return payload

    def new_org(self, name: str, *, key_name: str = ORG_KEY_NAME) -> dict[str, Any]:
        """What only the platform does: create org `name` (or find it) and an owner key for it.

        Returns the key's 201 answer (`id`, `key`, …): the only time the key is shown."""
        self.api("orchestrator", "POST", "/v1/orgs", {"name": name}, expect=(201, 409), platform=True)
        return self.new_key(name, "owner", name=key_name, platform=True)

    def new_key(
        self, org: str, role: str, *, name: str | None = None, platform: bool = False
    ) -> dict[str, Any]:
        """An API key of `org` with `role` (named `name`, or a fresh name): its one 201 answer."""
        body = {"name": name or f"{role}-{secrets.token_hex(4)}", "role": role}
        created: dict[str, Any] = self.api(
            "orchestrator", "POST", f"/v1/orgs/{org}/api-keys", body, (201,), platform=platform
        )
        return created

    def ensure_org_key(self) -> str:
        """`LANDFALL_ORG_KEY`: the owner key of org `default`, kept in the state like the admin token.

        A kept key is checked first; only a refused one (401: a fresh database, or it was revoked)
        is replaced. The name `local-owner` is unique among live keys, so if one by that name is
        still live (its key lost with an older state file) the new one gets a suffix."""
        key: str | None = self.state.get("org_key")
        if key:
            status, answer = http("GET", f"{self.url('orchestrator')}/v1/orgs/{ORG}", token=key)
            if status == 200:
                self.org_key = key
                return key
            if status != 401:
                raise StackError(f"checking the org key of {ORG!r} answered {status}: {answer}")
        try:
            created = self.new_key(ORG, "owner", name=ORG_KEY_NAME, platform=True)
        except StackError:
            created = self.new_key(ORG, "owner", name=f"{ORG_KEY_NAME}-{secrets.token_hex(3)}", platform=True)
        new: str = created["key"]
        self.org_key = self.state["org_key"] = new
        self._save()
        return new

    def provision(self) -> dict[str, Any]:
        """Org, its owner key, project, data plane `local` with an agent, development → staging → production.

        The admin token creates the org and its first key; the key (an owner) does the rest."""
        p: dict[str, Any] = self.state.setdefault("provisioned", {})
        o = self.url("orchestrator")
        if not p.get("org"):
            self.api("orchestrator", "POST", "/v1/orgs", {"name": ORG}, expect=(201, 409), platform=True)
        self.ensure_org_key()
        if not p.get("org"):
            self.api(
                "orchestrator", "POST", "/v1/orgs/default/projects", {"name": "default"}, expect=(201, 409)
            )
            dp = self.api("orchestrator", "POST", "/v1/orgs/default/dataplanes", {"name": "local"})
            p["dataplane_id"] = dp["id"]
            self.state["enrollment_token"] = dp["enrollment_token"]
            for order, env in enumerate(("development", "staging", "production")):
                self.api(
                    "orchestrator",
                    "POST",
                    "/v1/orgs/default/environments",
                    {"name": env, "dataplane_id": dp["id"], "order": order},
                    expect=(201, 409),
                )
            p["org"] = "default"
            self._save()
        self._say(f"org default, project default, data plane local ({p['dataplane_id']}) at {o}")
        return p

    def provision_demo(self) -> dict[str, Any]:
        """A local registry with a demo image, a service component on it, and a CI token."""
        p: dict[str, Any] = self.state.setdefault("provisioned", {})
        if not p.get("demo_component"):
            for tag in ("1.0", "1.1"):
                self.registry.push_image("demo/hello", tag)
            p["registry_id"], self.state["demo_ci_token"] = self.add_component(
                "hello",
                f"{self.registry.host}/demo/hello:1.0",
                registry="local registry",
                token_name="make-up",
            )
            p["demo_component"] = "hello"
            self._save()
        return p

    def add_component(
        self,
        name: str,
        image: str,
        *,
        auth: dict[str, str] | None = None,
        registry: str | None = None,
        port: int | None = 8080,
        token_name: str | None = None,
    ) -> tuple[str, str]:
        """A registry for the host of `image` (`auth`, anonymous by default; shown as `registry`),
        a service component `name` on it in the default project, and a CI token for it.

        Returns (registry id, CI token).
        """
        host = image.split("/", 1)[0]
        reg = self.api(
            "credentials",
            "POST",
            "/v1/orgs/default/registries",
            {
                "display_name": registry or f"reg {name}",
                "auth": {**(auth or {"type": "anonymous"}), "host": host},
            },
        )
        component: dict[str, Any] = {
            "name": name,
            "type": "service",
            "registry_id": reg["id"],
            "image": image,
        }
        if port is not None:
            component["port"] = port
        self.api("orchestrator", "POST", "/v1/orgs/default/projects/default/components", component)
        token = self.api(
            "webhook_gateway",
            "POST",
            f"/v1/orgs/default/projects/default/components/{name}/tokens",
            {"name": token_name} if token_name else {},
        )
        return reg["id"], token["token"]

    def write_local_env(self) -> Path:
        values = {
            "LANDFALL_URL": self.front_url,
            "LANDFALL_CONSOLE_URL": self.url("console"),
            "LANDFALL_GATEWAY_URL": self.url("webhook_gateway"),
            "LANDFALL_CREDENTIALS_URL": self.url("credentials"),
            "LANDFALL_ORCHESTRATOR_URL": self.url("orchestrator"),
            "LANDFALL_GATEWAY_URLS": ",".join(self.urls("webhook_gateway")),
            "LANDFALL_CREDENTIALS_URLS": ",".join(self.urls("credentials")),
            "LANDFALL_ORCHESTRATOR_URLS": ",".join(self.urls("orchestrator")),
            "LANDFALL_ADMIN_TOKEN": self.admin_token,  # the platform: creating orgs, the operator
            "LANDFALL_ORG_KEY": self.org_key or "",  # owner of org `default`: everyday use, the CLI
            "LANDFALL_DATABASE_URL": self.postgres.dsn,
            "LANDFALL_NATS_URL": self.nats.url,
            "LANDFALL_NATS_CREDS_FILE": str(self.nats_auth.creds_file("admin")),  # NATS auth: a full user
            **({"LANDFALL_NATS_CA_FILE": str(self.nats_ca_file)} if self.nats_ca_file else {}),
            "VAULT_ADDR": self.vault.addr,
            "VAULT_TOKEN": self.vault.token,
            "LANDFALL_REGISTRY_HOST": self.registry.host,
        }
        if self.kubeconfig is None:
            values["LANDFALL_SANDBOX_KUBE_URL"] = self.sandbox_url
        if self.state.get("demo_ci_token"):
            values["LANDFALL_DEMO_CI_TOKEN"] = self.state["demo_ci_token"]
        path = self.root / "local.env"
        path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
        path.chmod(0o600)
        return path
