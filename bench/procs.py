"""The benchmark's own helper processes (the floor server, the fleet of agents, extra sandboxes).

Each `Child` runs in its own process group with its log in a file, so that
stopping it takes its children too and a failure can show the log's tail; the
stack's services are `libs.devstack.stack.Stack`'s and are not started here.
`paused` SIGSTOPs a process for a block: its JetStream consumer then takes
nothing, as if it were down, without the restart a kill would need.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.stack import BenchError
from libs.devstack.stack import http, stop_group


class Child:
    """A helper process of the benchmark with its log in a file."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30) -> None:
        stop_group(self.popen, timeout=timeout)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_http(url: str, what: str, *, timeout: float = 90, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise BenchError(f"{what} exited with {child.popen.returncode}:\n{child.tail()}")
        with contextlib.suppress(OSError):
            if http("GET", url, timeout=2)[0] == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not answer at {url} within {timeout:.0f} s")


def write_secret_lines(path: Path, lines: list[str]) -> Path:
    """One secret a line (CI or enrollment tokens for wrk and the fleet), readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{line}\n" for line in lines))
    return path


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP a process for the block: its JetStream consumer then takes nothing, as if it were down."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
