"""The plumbing of the local stack: ports, child processes in their own groups, a tiny HTTP client.

Split from `stack.py` so that the stack reads as what it starts and provisions. Everything here is
re-exported by `libs.devstack.stack` (tests, bench and chaos import it from there).

Subtle: `stop_group` signals the whole process group (children are started with
`start_new_session`), so a service's own children die with it; `http` never raises for an HTTP
status (nor for a body that is not JSON: that comes back as text), only for a connection that
fails, so callers branch on the status as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    console: int = 8089

    def for_service(self, name: str) -> int:
        return {
            "credentials": self.credentials,
            "orchestrator": self.orchestrator,
            "webhook_gateway": self.gateway,
            "data_plane_agent": self.agent,
            "front": self.front,
            "console": self.console,
        }[name]


def _ephemeral_low() -> int:
    """Where the kernel's outgoing (ephemeral) ports begin: 32768 on Linux unless configured."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now, chosen BELOW the ephemeral range.

    A stack picks its ports first and binds them one service at a time, seconds later; a port
    the kernel hands out with bind(0) is from the ephemeral range, where any outgoing
    connection of any process may take it meanwhile (a bench agent once failed with "address
    already in use"). Below that range only another picker like this one can collide."""
    low, high = 20_000, min(_ephemeral_low(), 65_536)
    if high - low < 1_000:  # an unusual port range: fall back to the kernel's choice
        low, high = 1_024, 65_536
    chosen: list[int] = []
    rng = random.SystemRandom()
    for _ in range(count * 200):
        if len(chosen) == count:
            break
        port = rng.randrange(low, high)
        if port in chosen:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
    if len(chosen) < count:
        raise StackError(f"could not find {count} free TCP ports on 127.0.0.1 between {low} and {high}")
    return chosen


def random_ports() -> Ports:
    ports = free_ports(11)
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
            if not raw:
                return resp.status, None
            try:
                return resp.status, json.loads(raw)
            except ValueError:  # /metrics, a text /readyz: the text itself
                return resp.status, raw.decode(errors="replace")
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
