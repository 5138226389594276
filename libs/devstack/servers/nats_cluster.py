"""Several nats-servers as one JetStream cluster on loopback: the local stand-in for NATS in Kubernetes.

`NatsCluster(data_dir, nodes=3)` runs nodes `n1`…`n3`, each with its own data dir (and so its
own JetStream store), client, monitoring and route ports, routes to every peer, the same
server certificate when `tls` is given, and the same `config_extra` (operator-mode auth: every
node preloads the same account JWTs, so a user minted against one is accepted by all). It has
the `NatsServer` shape the stack and the chaos driver use (`start`, `stop`, `kill`, `restart`,
`is_running`, `url`), `url` being the comma-separated list every service reads from
`LANDFALL_NATS_URL`, plus `node(i)` to break one node at a time.

Subtle parts:
- Ports are picked once, up front, and never change: each node's route port is in its peers'
  configs, so a node may not move to new ports on a restart the way a lone server may.
- A node alone is ready when its JetStream is on; the cluster is ready when every running node's
  plain `/healthz` answers 200, which nats-server gives only once the meta group has a leader
  and the node is current with it. Creating a stream before that answers "JetStream system
  temporarily unavailable".
- One node alone cannot elect a meta leader (it needs a quorum, two of three), but its
  JetStream is on before that, so the nodes start one after the other and the cluster waits
  for its leader once they all run.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from libs.devstack.local_ca import ServerCert
from libs.devstack.servers.nats import NatsServer
from libs.devstack.servers.plumbing import free_port, http_status, wait_for
from libs.devstack.servers.process import DEFAULT_START_TIMEOUT, DEFAULT_STOP_TIMEOUT


class NatsCluster:
    """`nodes` nats-servers routed to each other as one JetStream cluster (see the module docstring)."""

    name = "nats-cluster"

    def __init__(
        self,
        data_dir: Path | str,
        *,
        nodes: int = 3,
        config_extra: str = "",
        ports: tuple[int, ...] = (),
        cluster_name: str = "landfall",
        tls: ServerCert | None = None,
    ) -> None:
        """`ports`: the nodes' client ports (the first may be the stack's usual NATS port); free ones
        for the rest. Monitoring and route ports are always free ones picked now."""
        if nodes < 2:
            raise ValueError("a cluster has at least two nodes; use NatsServer for one")
        self.data_dir = Path(data_dir).absolute()
        client = [*ports[:nodes]]
        while len(client) < nodes:
            client.append(free_port())
        route_ports = [free_port() for _ in range(nodes)]
        self.nodes = [
            NatsServer(
                self.data_dir / f"n{i + 1}",
                port=client[i],
                monitor_port=free_port(),
                config_extra=config_extra,
                server_name=f"n{i + 1}",
                cluster_port=route_ports[i],
                routes=tuple(p for j, p in enumerate(route_ports) if j != i),
                cluster_name=cluster_name,
                tls=tls,
            )
            for i in range(nodes)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what `LANDFALL_NATS_URL` takes)."""
        return ",".join(self.urls)

    @property
    def pid(self) -> int | None:
        """The first running node's PID (the stack's pids.json lists every node on its own)."""
        return next((node.pid for node in self.nodes if node.is_running()), None)

    def node(self, index: int) -> NatsServer:
        """Node `index` (0-based), to kill, stop or start one server of the cluster."""
        return self.nodes[index]

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Start the nodes not running (together), then wait until the cluster has a meta leader."""
        down = [node for node in self.nodes if not node.is_running()]
        if down:
            for node in down:
                node.start(timeout)
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Until every running node's `/healthz` answers 200 (meta leader known, node current)."""
        running = [node for node in self.nodes if node.is_running()]
        wait_for(
            lambda: all(http_status(f"{node.monitor_url}/healthz") == 200 for node in running),
            timeout,
            "the NATS cluster to elect a JetStream meta leader (every node's /healthz answers 200)",
        )

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        for node in reversed(self.nodes):
            with contextlib.suppress(Exception):
                node.stop(timeout)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def __repr__(self) -> str:
        return f"NatsCluster({str(self.data_dir)!r}, nodes={len(self.nodes)})"
