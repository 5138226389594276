"""The whole Landfall stack on one machine, as separate OS processes.

The e2e tests, benchmarks and chaos runs use the `Stack` class; `make up` runs
it through `libs.devstack.supervisor` (`python -m libs.devstack.stack up|down`
still works). It starts the real servers (nats-server with JetStream, PostgreSQL,
OpenBao, Debian's docker-registry as a local image registry), a data plane
(the current kubeconfig context when a cluster answers, otherwise the sandbox
Kubernetes API with its simulated controller), the four services and the front
door (`libs.devstack.front_door`, `LANDFALL_URL`), and then provisions what
API.md promises through the public HTTP API.

Subtle parts:
- Children run in their own process groups, so Ctrl-C reaches only this
  supervisor, which then stops services first (SIGTERM: they finish in-flight
  work) and servers last. `make down` does the same from another terminal
  using `.landfall/pids.json`.
- The front door is a process like the services, started after them; it only
  forwards, so it needs no readiness of its own beyond listening.
- Everything lives under the state directory and is reused: ports, the admin
  token, the Vault unseal key, the provisioned ids. A second `make up` finds
  the earlier registries, components and deployments.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libs.devstack.servers import DockerRegistry, NatsServer, OpenBaoServer, PostgresServer
from libs.runtime.natsauth import generate_nats_auth

SERVICES = ("credentials", "orchestrator", "webhook_gateway", "data_plane_agent")
LOG_NAMES = {
    "credentials": "credentials",
    "orchestrator": "orchestrator",
    "webhook_gateway": "gateway",
    "data_plane_agent": "agent",
    "sandbox": "sandbox",
    "front": "front-door",
}


@dataclass
class Ports:
    gateway: int = 8080
    credentials: int = 8081
    orchestrator: int = 8082
    agent: int = 8083
    nats: int = 4222
    postgres: int = 5433
    vault: int = 8200
    registry: int = 5000
    sandbox: int = 8090
    front: int = 8088

    def for_service(self, name: str) -> int:
        return {
            "credentials": self.credentials,
            "orchestrator": self.orchestrator,
            "webhook_gateway": self.gateway,
            "data_plane_agent": self.agent,
            "front": self.front,
        }[name]


def free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def random_ports() -> Ports:
    ports = free_ports(10)
    ports[6] = 0  # OpenBao also needs port+1 (cluster listener): let it pick a free pair itself
    return Ports(*ports)


class StackError(RuntimeError):
    pass


def stop_group(popen: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop the process group of `popen` (started with start_new_session) and reap it.

    `sig` first; SIGKILL for the group if it has not exited within `timeout` seconds.
    """
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, sig)
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(5)


def http(
    method: str, url: str, *, token: str | None = None, body: Any = None, timeout: float = 10
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback only
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None


@dataclass
class Stack:
    root: Path
    ports: Ports = field(default_factory=Ports)
    bus_prefix: str = ""
    persistent_vault: bool = True
    echo: Callable[[str, str], None] | None = None
    kubeconfig: Path | None = None  # a real cluster's kubeconfig; None = sandbox
    log_format: str = "json"
    extra_env: dict[str, str] = field(default_factory=dict)
    # The sandbox keeps its objects in `<root>/sandbox/objects.json` across restarts (`make up`);
    # off for tests and benchmarks, which start from nothing and need its CPU for themselves.
    persist_sandbox: bool = False

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        )
        self.admin_token: str = self.state.setdefault("admin_token", "lfadm_" + secrets.token_urlsafe(24))
        # NATS auth (operator mode): services are full users; each agent gets its own user at enrollment.
        self.nats_auth = generate_nats_auth(self.root / "nats-auth")
        self.nats = NatsServer(
            self.root / "nats", port=self.ports.nats, config_extra=self.nats_auth.server_config
        )
        self.postgres = PostgresServer(self.root / "postgres", port=self.ports.postgres)
        self.vault = OpenBaoServer(
            self.root / "openbao",
            port=self.ports.vault or None,
            root_token=None if self.persistent_vault else "root-" + secrets.token_hex(8),
            persistent=self.persistent_vault,
        )
        self.registry = DockerRegistry(self.root / "registry", port=self.ports.registry)
        self.procs: dict[str, Proc] = {}
        self._save()

    # --- bookkeeping --------------------------------------------------------------------
    def _save(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=2))
        self.state_path.chmod(0o600)

    def _say(self, line: str) -> None:
        if self.echo:
            self.echo("landfall", line)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports.for_service(service)}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.sandbox}"

    @property
    def front_url(self) -> str:
        """`LANDFALL_URL`: the front door, where every endpoint of every service answers."""
        return self.url("front")

    def write_pids(self) -> None:
        pids = {name: p.popen.pid for name, p in self.procs.items() if p.popen and p.popen.poll() is None}
        for name, server in self._servers().items():
            if server.is_running() and server.pid:
                pids[name] = server.pid
        pids["supervisor"] = os.getpid()
        (self.root / "pids.json").write_text(json.dumps(pids))

    def _servers(self) -> dict[str, Any]:
        return {
            "nats": self.nats,
            "postgres": self.postgres,
            "openbao": self.vault,
            "registry": self.registry,
        }

    # --- infrastructure -------------------------------------------------------------------
    def start_infra(self) -> None:
        for name, server in self._servers().items():
            self._say(f"starting {name} …")
            server.start()
        self.state["vault_token"] = self.vault.token
        self._save()

    def env(self, service: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANDFALL_", "VAULT_"))}
        env.update(
            {
                "LANDFALL_SERVICE_NAME": service.replace("_", "-"),
                "LANDFALL_HTTP_HOST": "127.0.0.1",
                "LANDFALL_HTTP_PORT": str(self.ports.for_service(service)),
                "LANDFALL_NATS_URL": self.nats.url,
                "LANDFALL_DATABASE_URL": self.postgres.dsn,
                "LANDFALL_VAULT_ADDR": self.vault.addr,
                "LANDFALL_VAULT_TOKEN": self.vault.token,
                "LANDFALL_ADMIN_TOKEN": self.admin_token,
                "LANDFALL_BUS_PREFIX": self.bus_prefix,
                "LANDFALL_LOG_FORMAT": self.log_format,
                "LANDFALL_PUBLIC_URL": self.url("webhook_gateway"),
                "LANDFALL_ORCHESTRATOR_URL": self.url("orchestrator"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        # NATS auth: the agent has no creds here, it gets its own NATS user when it enrolls.
        if service != "data_plane_agent":
            env["LANDFALL_NATS_CREDS_FILE"] = str(self.nats_auth.creds_file(service.replace("_", "-")))
        if service == "orchestrator":
            env["LANDFALL_NATS_ACCOUNT_SIGNING_SEED"] = self.nats_auth.account_signing_seed
            env["LANDFALL_NATS_ACCOUNT"] = self.nats_auth.account
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.root / "logs" / f"{LOG_NAMES.get(name, name)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        proc = Proc(name, argv, env, log_path)
        logfile = log_path.open("ab")
        popen = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        proc.popen = popen

        def pump() -> None:
            assert popen.stdout is not None
            for raw in iter(popen.stdout.readline, b""):
                logfile.write(raw)
                logfile.flush()
                if self.echo:
                    self.echo(name, raw.decode(errors="replace").rstrip())
            logfile.close()

        proc.pump = threading.Thread(target=pump, name=f"log-{name}", daemon=True)
        proc.pump.start()
        self.procs[name] = proc
        self.write_pids()
        return proc

    def start_sandbox(self) -> None:
        kubeconfig = self.root / "sandbox-kubeconfig.yaml"
        self._spawn(
            "sandbox",
            [
                sys.executable,
                "-m",
                "libs.devstack.sandbox",
                "--port",
                str(self.ports.sandbox),
                "--kubeconfig",
                str(kubeconfig),
                *(["--state", str(self.root / "sandbox" / "objects.json")] if self.persist_sandbox else []),
            ],
            {**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._wait_http(f"{self.sandbox_url}/version", "sandbox Kubernetes API", expect=(200,))
        self.kubeconfig_in_use = kubeconfig

    # --- services ---------------------------------------------------------------------------
    def start_service(self, service: str, *, extra: dict[str, str] | None = None, wait: bool = True) -> None:
        env = self.env(service)
        env.update(extra or {})
        if service == "data_plane_agent":
            env.setdefault("LANDFALL_STATE_DIR", str(self.root / "agent"))
            env.setdefault(
                "LANDFALL_KUBECONFIG", str(self.kubeconfig or self.root / "sandbox-kubeconfig.yaml")
            )
            if "enrollment_token" in self.state:
                env.setdefault("LANDFALL_ENROLLMENT_TOKEN", self.state["enrollment_token"])
        self._spawn(service, [sys.executable, "-m", f"services.{service}"], env)
        if wait:
            self._wait_http(f"{self.url(service)}/readyz", service.replace("_", "-"))

    def start_services(self) -> None:
        for service in ("credentials", "orchestrator", "webhook_gateway"):
            self.start_service(service)
        self.start_front_door()

    def start_front_door(self) -> None:
        argv = [sys.executable, "-m", "libs.devstack.front_door", "--port", str(self.ports.front)]
        for flag, service in (
            ("--credentials", "credentials"),
            ("--gateway", "webhook_gateway"),
            ("--orchestrator", "orchestrator"),
        ):
            argv += [flag, self.url(service)]
        self._spawn("front", argv, {**os.environ, "PYTHONUNBUFFERED": "1"})
        self._wait_http(f"{self.front_url}/readyz", "front door")

    def _wait_http(
        self, url: str, what: str, *, timeout: float = 90, expect: tuple[int, ...] = (200,)
    ) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        announced = False
        while time.monotonic() < deadline:
            try:
                status, _ = http("GET", url, timeout=2)
                if status in expect:
                    self._say(f"{what} is ready")
                    return
                last = status
            except (OSError, urllib.error.URLError) as exc:
                last = exc
            if not announced and time.monotonic() > deadline - timeout + 3:
                self._say(f"waiting for {what} …")
                announced = True
            time.sleep(0.2)
        raise StackError(
            f"{what} did not become ready at {url} (last answer: {last!r}); see {self.root}/logs/"
        )

    def stop_service(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        proc = self.procs.get(name)
        if not proc or not proc.popen or proc.popen.poll() is not None:
            return
        stop_group(proc.popen, sig=sig, timeout=timeout)
        if proc.pump:
            proc.pump.join(5)

    def kill_service(self, name: str) -> None:
        self.stop_service(name, sig=signal.SIGKILL)

    def restart_service(self, name: str) -> None:
        proc = self.procs[name]
        self.stop_service(name)
        self._spawn(name, proc.argv, proc.env)
        if name in SERVICES or name == "front":
            self._wait_http(f"{self.url(name)}/readyz", name)

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop_service(name)
        for name, server in reversed(list(self._servers().items())):
            self._say(f"stopping {name}")
            server.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.root / "pids.json").unlink()

    # --- provisioning through the public API ----------------------------------------------
    def api(
        self, service: str, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201)
    ) -> Any:
        status, payload = http(method, self.url(service) + path, token=self.admin_token, body=body)
        if status not in expect:
            raise StackError(f"{method} {path} answered {status}: {payload}")
        return payload

    def provision(self) -> dict[str, Any]:
        """Org, project, data plane `local` with an agent, development → staging → production."""
        p: dict[str, Any] = self.state.setdefault("provisioned", {})
        o = self.url("orchestrator")
        if not p.get("org"):
            self.api("orchestrator", "POST", "/v1/orgs", {"name": "default"}, expect=(201, 409))
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
            "LANDFALL_CONSOLE_URL": self.front_url,
            "LANDFALL_GATEWAY_URL": self.url("webhook_gateway"),
            "LANDFALL_CREDENTIALS_URL": self.url("credentials"),
            "LANDFALL_ORCHESTRATOR_URL": self.url("orchestrator"),
            "LANDFALL_GATEWAY_URLS": self.url("webhook_gateway"),
            "LANDFALL_CREDENTIALS_URLS": self.url("credentials"),
            "LANDFALL_ORCHESTRATOR_URLS": self.url("orchestrator"),
            "LANDFALL_ADMIN_TOKEN": self.admin_token,
            "LANDFALL_DATABASE_URL": self.postgres.dsn,
            "LANDFALL_NATS_URL": self.nats.url,
            "LANDFALL_NATS_CREDS_FILE": str(self.nats_auth.creds_file("admin")),  # NATS auth: a full user
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


if __name__ == "__main__":
    # `make up` / `make down` run `python -m libs.devstack.stack`; the command lives in supervisor.py.
    from libs.devstack.supervisor import main

    sys.exit(main())
