"""`ServerProcess`: a server as a local process with a data dir, a port, a readiness wait and a log.

Every server has the same shape: `start()` blocks until it really answers (or raises
`ServerStartError` with the tail of its log and a hint), `restart()` keeps ports and data dir,
`kill()` SIGKILLs (crash tests), `stop()` sends the server's graceful signal, waits, then
SIGKILLs; both are idempotent. Subclasses say how to find the binary, prepare the data dir,
build the command and tell readiness.

Subtle parts:
- Ports never change after a successful start, so URLs stay valid across `restart()`; only a
  first start on ports chosen here is retried with new ones after "address already in use".
- Servers run in their own session, so a Ctrl-C in the terminal reaches only Python, which
  stops them (an `atexit` hook stops any still running; a SIGKILLed parent leaves them).
  While a server runs, `<data_dir>/<name>.pid` holds its PID, and `start()` refuses to launch
  next to a live leftover of an earlier run and says how to stop it.
- `kill()` SIGKILLs the whole process tree found through /proc, not just the process group:
  Postgres backends call `setsid()` themselves, and a backend surviving its postmaster keeps
  the shared memory attached, so the next start refuses ("pre-existing shared memory block").
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from libs.devstack.servers.errors import ServerError, ServerStartError
from libs.devstack.servers.plumbing import clean_env, descendants, free_port, pid_alive, wait_for

DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0
_LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class RunAs:
    user: str
    uid: int
    gid: int


_LIVE: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop(timeout=5.0)


class ServerProcess:
    """Shared lifecycle: launch, readiness, log tail, stop/kill/restart."""

    name: ClassVar[str] = "server"
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    # Environment variables that would silently reconfigure the server or its client tools.
    env_drop_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, data_dir: Path | str, port: int | None, *, ports_auto: bool | None = None) -> None:
        """`port=None` picks a free one (and allows new ports when the first start finds it taken)."""
        self.data_dir = Path(data_dir).absolute()
        self.port = port if port is not None else self._free_port()
        self._ports_auto = port is None if ports_auto is None else ports_auto
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
        return clean_env(self.env_drop_prefixes)

    def _run_as(self) -> RunAs | None:
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

    def _free_port(self) -> int:
        return free_port()

    def _pick_new_ports(self) -> None:
        """New ports after a port conflict on the first start."""
        self.port = self._free_port()

    def _write_config(self, path: Path, text: str) -> None:
        path.write_text(
            f"# Generated by libs/devstack/servers ({self.name}); rewritten on every start.\n{text}"
        )

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

    @contextlib.contextmanager
    def _logged_child(self, header: str) -> Iterator[dict[str, Any]]:
        """Options for a child process (server or tool) whose output goes to the log after `header`.

        It runs in the data dir, with the environment of `_env`, as the user of `_run_as`; the log
        tail of a failed start begins after the header.
        """
        run_as = self._run_as()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {header}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            yield {
                "stdin": subprocess.DEVNULL,
                "stdout": log,
                "stderr": subprocess.STDOUT,
                "cwd": self.data_dir,
                "env": self._env(),
                "user": run_as.uid if run_as else None,
                "group": run_as.gid if run_as else None,
                "extra_groups": [] if run_as else None,
            }

    def _start_once(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._check_no_leftover()
        self._prepare()
        command = self._command()
        with self._logged_child(
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}"
        ) as options:
            self._proc = subprocess.Popen(command, start_new_session=True, **options)
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
        if pid_alive(old_pid) and argv0 == str(self.binary).encode():
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
            children = descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            for child in children:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(child, signal.SIGKILL)
            proc.wait()
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: not any(map(pid_alive, children)), 10.0, f"{self.name} children to exit")
