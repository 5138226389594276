"""Agent settings (`LANDFALL_*` environment variables).

An agent identifies itself either from `state_dir/agent.json` (written at the
first start, after enrolling with `enrollment_token`) or directly from
`dataplane_id` + `private_key_file` (tests and benchmarks that run many agents).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from libs.runtime.settings import HostList, ServiceSettings

# Inside a cluster, registries usually live on private addresses; link-local (cloud metadata) is not listed.
IN_CLUSTER_RANGES = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "fc00::/7",
    "::1/128",
]


class Settings(ServiceSettings):
    service_name: str = "data-plane-agent"
    http_port: int = 8083

    orchestrator_url: str = "http://127.0.0.1:8082"
    enrollment_token: SecretStr | None = Field(
        default=None, description="one-time token from POST /v1/orgs/{org}/dataplanes; only the first start"
    )
    state_dir: Path = Field(default=Path(".landfall/agent"), description="where agent.json (0600) lives")
    dataplane_id: str | None = Field(default=None, description="skip enrollment: use this id ...")
    private_key_file: Path | None = Field(default=None, description="... and this X25519 key (base64 or raw)")
    enrollment_wait_seconds: float = 60.0
    command_public_keys: str = Field(
        default="",
        description="comma-separated base64 Ed25519 public keys to accept on commands besides those pinned at"
        " enrollment (an agent that does not enroll, or a rotation pinned by hand)",
    )

    @property
    def command_keys(self) -> tuple[str, ...]:
        return tuple(key.strip() for key in self.command_public_keys.split(",") if key.strip())

    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig file; unset = in-cluster config, else $KUBECONFIG/~/.kube/config",
    )
    kube_context: str | None = None
    kube_timeout_seconds: float = 10.0
    kube_max_connections: int = Field(default=100, ge=2, description="HTTP connection pool to the API server")
    kube_max_watches: int = Field(
        default=50, ge=1, description="watch streams at once (each holds a connection)"
    )
    kube_service_account: str | None = Field(
        default=None,
        description="the agent's own service account (in a pod: the downward API's spec.serviceAccountName);"
        " set, the agent binds it to read Secrets in each namespace it makes (deploy/kubernetes/agent.yaml)",
    )
    kube_service_account_namespace: str | None = Field(
        default=None,
        description="the namespace of that service account (the downward API's metadata.namespace)",
    )

    @property
    def service_account(self) -> str | None:
        """`namespace:name` of the agent's service account, when both are known."""
        if self.kube_service_account and self.kube_service_account_namespace:
            return f"{self.kube_service_account_namespace}:{self.kube_service_account}"
        return None

    ensure_streams: bool = Field(
        default=True,
        description="create the JetStream streams if missing (never with the agent's own NATS user)",
    )
    heartbeat_interval_seconds: float = 5.0
    rollout_poll_seconds: float = Field(
        default=2.0, description="re-check a rollout (and its Pods) at least this often, watch or not"
    )
    ack_wait_seconds: float = 60.0
    concurrency: int = Field(
        default=8,
        ge=1,
        le=32,
        description="components whose commands are applied at once (LANDFALL_CONCURRENCY); each"
        " component's commands stay in order; at most the consumer's max_ack_pending (32)",
    )

    resolve_in_cluster: bool = Field(
        default=True, description="answer the orchestrator's tag -> digest requests from inside the cluster"
    )
    resolve_timeout_seconds: float = Field(
        default=5.0, gt=0, le=30, description="the whole of one in-cluster lookup, token dance included"
    )
    insecure_registries: HostList = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"],
        description="registries asked over plain HTTP (host or host:port; LANDFALL_INSECURE_REGISTRIES)",
    )
    registry_private_hosts: HostList = Field(
        default_factory=lambda: list(IN_CLUSTER_RANGES),
        description="non-global addresses in-cluster lookups may reach (hosts, host:port, CIDR ranges;"
        " LANDFALL_REGISTRY_PRIVATE_HOSTS); the default lists the private ranges, not link-local",
    )
    registry_token_hosts: HostList = Field(
        default_factory=list,
        description="token realm hosts besides a registry's own (LANDFALL_REGISTRY_TOKEN_HOSTS)",
    )
