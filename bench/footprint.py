"""Resident memory and CPU time of the stack's processes, read with psutil.

A service is one OS process; a server such as PostgreSQL is a tree (postmaster
and one backend per connection), so every figure here covers a process and
all its descendants. `Sampler` polls in a thread to catch the peak between
the snapshots the report shows.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import psutil

MB = 1024 * 1024


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_mb(pid: int) -> float:
    """Resident set size of the process and its descendants, in MiB."""
    total = 0
    for proc in _tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return round(total / MB, 1)


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User + system CPU seconds used so far by the process (and, with `tree`, its living descendants)."""
    total = 0.0
    for proc in _tree(pid) if tree else _tree(pid)[:1]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def memory(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: rss_mb(pid) for name, pid in pids.items()}


def cpu(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds per process tree; this process alone (its children are the stack, counted apart)."""
    own = os.getpid()
    return {name: cpu_seconds(pid, tree=pid != own) for name, pid in pids.items()}


class Sampler:
    """Remember the highest RSS of each process seen while running (one sample per `interval`)."""

    def __init__(self, pids: Mapping[str, int], *, interval: float = 1.0) -> None:
        self.pids = dict(pids)
        self.interval = interval
        self.peak: dict[str, float] = dict.fromkeys(self.pids, 0.0)
        self.peak_total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _sample(self) -> None:
        now = memory(self.pids)
        for name, value in now.items():
            self.peak[name] = max(self.peak[name], value)
        self.peak_total = max(self.peak_total, round(sum(now.values()), 1))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
