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
  token, the org key, the Vault unseal key, the provisioned ids. A second `make up`
  finds the earlier registries, components and deployments.
- Two credentials, as in production: the platform admin token only creates org
  `default` and its first owner key (`local-owner`, `LANDFALL_ORG_KEY`); everything
  else is provisioned with that key, as a user would. The key is made again only
  when the orchestrator refuses it (a fresh database, or someone revoked it).
- Vault: the root token stays with the stack (state.json, and `VAULT_TOKEN` in local.env for the
  operator). The credentials service and the gateway each get a token of their own with only their
  policy (`vault_policies.py`), made at every start (the last start's revoked); the orchestrator's
  may only write config secrets, and the agent gets no Vault address or token at all.
- `replicas=N` runs N processes of each HTTP service, each on its own port (the
  first on the `Ports` port, the others on free ports kept in the state); the front
  door round-robins over them and `LANDFALL_*_URLS` lists them all. Replica k > 1 of
  a service is the process `<service>-<k>` (its log is `<name>-<k>.log`).
- `nats_nodes=3` runs NATS as a three-node JetStream cluster (`servers.NatsCluster`, the
  first node on the `Ports` NATS port, the others' client ports kept in the state); every
  service gets the comma-separated list as `LANDFALL_NATS_URL` and makes its streams R3.
  `make up` takes both from `LANDFALL_NATS_NODES` and `LANDFALL_REPLICAS`.
- `nats_tls=True` (what `make up` does unless `LANDFALL_NATS_TLS=0`) puts NATS behind TLS with
  the stack's own CA (`local_ca.LocalCA`, made at first start under `nats-ca/`, kept): URLs are
  `tls://`, and every service, the agent included, gets `LANDFALL_NATS_CA_FILE`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libs.contracts.signing import new_seed
from libs.contracts.subjects import Subjects
from libs.devstack.local_ca import LocalCA, ServerCert
from libs.devstack.processes import Ports, Proc, StackError, free_ports, http, random_ports, stop_group
from libs.devstack.provisioning import Provisioning
from libs.devstack.servers import DockerRegistry, NatsServer, OpenBaoServer, PostgresServer
from libs.devstack.servers.nats_cluster import NatsCluster
from libs.devstack.vault_policies import ServiceToken, make_service_tokens
from libs.runtime.natsauth import generate_nats_auth, service_permissions

__all__ = ["LOG_NAMES", "Ports", "Stack", "StackError", "free_ports", "http", "random_ports", "stop_group"]

SERVICES = ("credentials", "orchestrator", "webhook_gateway", "data_plane_agent")
HTTP_SERVICES = ("credentials", "orchestrator", "webhook_gateway")
LOG_NAMES = {
    "credentials": "credentials",
    "orchestrator": "orchestrator",
    "webhook_gateway": "gateway",
    "data_plane_agent": "agent",
    "sandbox": "sandbox",
    "front": "front-door",
    "console": "console",
}


def replica_name(service: str, index: int) -> str:
    """The process name of replica `index` (0-based) of `service`: the first is the service itself."""
    return service if index == 0 else f"{service}-{index + 1}"


def log_name(name: str) -> str:
    service, _, replica = name.partition("-")
    label = LOG_NAMES.get(service, service)
    return f"{label}-{replica}" if replica else label


@dataclass
class Stack(Provisioning):
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
    replicas: int = 1  # processes of each HTTP service (credentials, orchestrator, gateway)
    nats_nodes: int = 1  # nats-servers; more than one: one JetStream cluster
    nats_tls: bool = False  # NATS over TLS, its certificate signed by the stack's own CA
    # Each Vault user's own token with its own policy (vault_policies.py), made by start_infra.
    vault_tokens: dict[str, ServiceToken] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path = self.root / "state.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        )
        self.admin_token: str = self.state.setdefault("admin_token", "lfadm_" + secrets.token_urlsafe(24))
        # The seed the orchestrator signs agents' commands with: made once, kept (agents pin its key).
        self.command_seed_file = seed_file = self.root / "command-signing.seed"
        if not seed_file.exists():
            with os.fdopen(os.open(seed_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(new_seed())
        self.org_key: str | None = self.state.get("org_key")  # `local-owner`, once provision() made it
        extra: dict[str, list[int]] = self.state.setdefault("replica_ports", {})
        taken = {*vars(self.ports).values(), *(port for ports in extra.values() for port in ports)}
        for service in HTTP_SERVICES:
            have = extra.setdefault(service, [])
            while len(have) < self.replicas - 1:
                # free now, and none of the stack's own (free_ports may hand out one it just closed)
                fresh = [port for port in free_ports(self.replicas) if port not in taken]
                have += fresh[: self.replicas - 1 - len(have)]
                taken.update(have)
        self.replica_urls: dict[str, list[str]] = {
            service: [
                f"http://127.0.0.1:{port}"
                for port in [self.ports.for_service(service), *extra[service]][: self.replicas]
            ]
            for service in HTTP_SERVICES
        }
        # NATS auth (operator mode): services are full users; each agent gets its own user at enrollment.
        self.nats_auth = generate_nats_auth(self.root / "nats-auth")
        self.nats: NatsServer | NatsCluster
        tls: ServerCert | None = None
        self.nats_ca_file: Path | None = None
        if self.nats_tls:
            ca = LocalCA(self.root / "nats-ca")
            tls, self.nats_ca_file = ca.server("nats"), ca.ca_file
        if self.nats_nodes > 1:
            kept: list[int] = self.state.setdefault("nats_ports", [])
            taken = {*vars(self.ports).values(), *(p for ps in extra.values() for p in ps)}
            while len(kept) < self.nats_nodes - 1:
                kept += [
                    port for port in free_ports(self.nats_nodes) if port not in taken and port not in kept
                ][: self.nats_nodes - 1 - len(kept)]
            self.nats = NatsCluster(
                self.root / "nats-cluster",
                nodes=self.nats_nodes,
                config_extra=self.nats_auth.server_config,
                ports=(self.ports.nats, *kept),
                tls=tls,
            )
        else:
            self.nats = NatsServer(
                self.root / "nats", port=self.ports.nats, config_extra=self.nats_auth.server_config, tls=tls
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
        """The address of `service` (its first replica), or of a replica by its process name."""
        base, _, replica = service.partition("-")
        if replica and base in self.replica_urls:
            return self.replica_urls[base][int(replica) - 1]
        return f"http://127.0.0.1:{self.ports.for_service(service)}"

    def urls(self, service: str) -> list[str]:
        """Every replica's own address (one for the agent and the front door)."""
        return list(self.replica_urls.get(service, [self.url(service)]))

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
        if isinstance(self.nats, NatsCluster):  # `make down` stops each node
            pids.pop("nats", None)
            for index, node in enumerate(self.nats.nodes):
                if node.is_running() and node.pid:
                    pids[f"nats-{index + 1}"] = node.pid
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
        self.state["vault_token"] = self.vault.token  # the root token: the operator's, no service's
        # A token per Vault user, made again at every start; the last start's are revoked first.
        self.vault_tokens = make_service_tokens(
            self.vault.addr, self.vault.token, revoke=self.state.get("vault_token_accessors", [])
        )
        self.state["vault_token_accessors"] = [t.accessor for t in self.vault_tokens.values()]
        self._save()

    def env(self, service: str, *, port: int | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANDFALL_", "VAULT_"))}
        env.update(
            {
                "LANDFALL_SERVICE_NAME": service.replace("_", "-"),
                "LANDFALL_HTTP_HOST": "127.0.0.1",
                "LANDFALL_HTTP_PORT": str(port or self.ports.for_service(service)),
                "LANDFALL_NATS_URL": self.nats.url,
                "LANDFALL_DATABASE_URL": self.postgres.dsn,
                "LANDFALL_ADMIN_TOKEN": self.admin_token,
                "LANDFALL_BUS_PREFIX": self.bus_prefix,
                "LANDFALL_LOG_FORMAT": self.log_format,
                "LANDFALL_PUBLIC_URL": self.url("webhook_gateway"),
                "LANDFALL_ORCHESTRATOR_URL": self.url("orchestrator"),
                # Every caller here is 127.0.0.1 (tests, the tenancy matrix, fuzzers refuse on purpose)
                "LANDFALL_PREAUTH_REFUSAL_BURST": "1000000",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.nats_ca_file is not None:
            env["LANDFALL_NATS_CA_FILE"] = str(self.nats_ca_file)
        # NATS auth: the agent has no creds here, it gets its own NATS user when it enrolls.
        if service != "data_plane_agent":
            # each service its own user, with only the subjects it uses (libs/runtime/natsperms.py)
            user = service.replace("_", "-")
            permissions = service_permissions(Subjects(self.bus_prefix), user)
            env["LANDFALL_NATS_CREDS_FILE"] = str(self.nats_auth.creds_file(user, permissions))
        if service in self.vault_tokens:  # the agent never talks to Vault
            env["LANDFALL_VAULT_ADDR"] = self.vault.addr
            env["LANDFALL_VAULT_TOKEN"] = self.vault_tokens[service].token
        if service == "credentials":
            # The local registries listen on loopback, which registry calls may not reach unless listed.
            env["LANDFALL_REGISTRY_PRIVATE_HOSTS"] = "127.0.0.1/8,::1,localhost"
        if service == "orchestrator":
            env["LANDFALL_NATS_ACCOUNT_SIGNING_SEED"] = self.nats_auth.account_signing_seed
            env["LANDFALL_NATS_ACCOUNT"] = self.nats_auth.account
            # revoking agents' NATS users: re-sign the account JWT, push it as a system user
            env["LANDFALL_NATS_OPERATOR_SIGNING_SEED"] = self.nats_auth.operator_signing_seed
            env["LANDFALL_NATS_SYSTEM_CREDS_FILE"] = str(self.nats_auth.system_creds_file())
            env["LANDFALL_COMMAND_SIGNING_SEED_FILE"] = str(self.command_seed_file)
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.root / "logs" / f"{log_name(name)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        proc = Proc(name, argv, env, log_path)
        logfile = log_path.open("ab")
        if self.echo is None:
            # Straight into the file: a pipe read line by line by a thread of this process (the
            # bench driver, a test) costs that process CPU per log line, and a full pipe blocks
            # the service's event loop on its next log line.
            with logfile:
                proc.popen = subprocess.Popen(
                    argv, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
                )
            self.procs[name] = proc
            self.write_pids()
            return proc
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
        """Start `service`: every replica of an HTTP service, one after the other (each migrates
        and becomes ready before the next starts, so no two run a migration at once)."""
        for index, url in enumerate(self.urls(service)):
            name = replica_name(service, index)
            env = self.env(service, port=int(url.rsplit(":", 1)[1]))
            env.update(extra or {})
            if service == "data_plane_agent":
                env.setdefault("LANDFALL_STATE_DIR", str(self.root / "agent"))
                env.setdefault(
                    "LANDFALL_KUBECONFIG", str(self.kubeconfig or self.root / "sandbox-kubeconfig.yaml")
                )
                if "enrollment_token" in self.state:
                    env.setdefault("LANDFALL_ENROLLMENT_TOKEN", self.state["enrollment_token"])
            self._spawn(name, [sys.executable, "-m", f"services.{service}"], env)
            if wait:
                self._wait_http(f"{url}/readyz", log_name(name))

    def start_services(self) -> None:
        for service in HTTP_SERVICES:
            self.start_service(service)
        self.start_front_door()
        self.start_console()

    def start_console(self) -> None:
        """The web console (one process: its sessions live in its memory), over the front door."""
        # Everything through the front door (every replica), not the first orchestrator that env() names;
        # and none of what env() hands the other services that the console must not hold.
        withheld = ("LANDFALL_ORCHESTRATOR_URL", "LANDFALL_ADMIN_TOKEN", "LANDFALL_DATABASE_URL")
        nothing = dict.fromkeys(withheld, "")
        self.start_service("console", extra={"LANDFALL_URL": self.front_url, **nothing})

    def start_front_door(self) -> None:
        argv = [sys.executable, "-m", "libs.devstack.front_door", "--port", str(self.ports.front)]
        for flag, service in (
            ("--credentials", "credentials"),
            ("--gateway", "webhook_gateway"),
            ("--orchestrator", "orchestrator"),
        ):
            argv += [flag, ",".join(self.urls(service))]
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
        if name.partition("-")[0] in SERVICES or name in ("front", "console"):
            self._wait_http(f"{self.url(name)}/readyz", name)

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop_service(name)
        for name, server in reversed(list(self._servers().items())):
            self._say(f"stopping {name}")
            server.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.root / "pids.json").unlink()


if __name__ == "__main__":
    # `make up` / `make down` run `python -m libs.devstack.stack`; the command lives in supervisor.py.
    from libs.devstack.supervisor import main

    sys.exit(main())
