"""The kill driver: SIGKILL a part of the stack at a random moment, leave it down, bring it back.

Targets: the four services (processes of the stack), the three servers
(nats-server, PostgreSQL, OpenBao) and the data plane's Kubernetes API (the
sandbox, durable like an apiserver over etcd, so its write log, the evidence,
survives). An event takes down one target or two at once (`pair`), for a random
1-6 s, or the agent for a full minute (`away`), then restarts them: servers
first (the services' readiness needs them), and waits until each is ready
again. Events never overlap, so the run has a known timeline: `Outage` windows,
used to tell a 503 during an outage from one outside any.

The driver runs in a thread: `Stack` is blocking code, and the load generator
keeps its event loop.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from libs.devstack.stack import Stack, http

T = TypeVar("T")

SERVICES = ("webhook_gateway", "orchestrator", "credentials", "data_plane_agent")
SERVERS = ("nats", "postgres", "openbao")
KUBE_API = "sandbox"
TARGETS = (*SERVICES, *SERVERS, KUBE_API)
PAIRS = (
    ("postgres", "orchestrator"),
    ("nats", "data_plane_agent"),
    ("openbao", "credentials"),
    ("nats", "webhook_gateway"),
    ("postgres", "webhook_gateway"),
    ("orchestrator", "credentials"),
    ("openbao", "postgres"),
    ("nats", "postgres"),
)
AGENT_AWAY_SECONDS = 60.0
# Rough length of an event (kill, down time, restart and readiness), to space events out.
EVENT_SECONDS = 12.0
# After an outage ends, services need a moment to reconnect: a 503 that soon is still "during" it.
RECOVERY_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class Event:
    at: float
    targets: tuple[str, ...]
    down: float

    @property
    def label(self) -> str:
        return "+".join(self.targets) + (" (away)" if self.down >= AGENT_AWAY_SECONDS else "")


@dataclass
class Outage:
    event: Event
    killed_at: float
    restored_at: float | None = None
    error: str | None = None


def outside(outages: list[Outage], moments: list[float]) -> int:
    """How many of `moments` fall outside every outage (and its recovery grace)."""
    windows = [(o.killed_at, (o.restored_at or float("inf")) + RECOVERY_GRACE_SECONDS) for o in outages]
    return sum(1 for t in moments if not any(a <= t <= b for a, b in windows))


@dataclass
class Driver:
    stack: Stack
    events: list[Event]
    say: Callable[[str], None] = print
    outages: list[Outage] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    failures: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    async def beside(self, work: Awaitable[T]) -> T:
        """`work` with the kills going on beside it; then the rest of the schedule is waited out.
        The driver is stopped whatever happens, so a failed run leaves nothing down."""
        self.start()
        try:
            done = await work
            await asyncio.to_thread(self.join)
            return done
        finally:
            self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chaos-driver", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def _run(self) -> None:
        for event in sorted(self.events, key=lambda e: e.at):
            wait = self._started + event.at - time.monotonic()
            if wait > 0 and self.stopping.wait(wait):
                return
            self._one(event)

    def _one(self, event: Event) -> None:
        outage = Outage(event, killed_at=time.monotonic())
        self.outages.append(outage)
        elapsed = outage.killed_at - self._started
        self.say(f"t={elapsed:6.1f}s kill {event.label}, down {event.down:.0f} s")
        for target in event.targets:
            self._kill(target)
        time.sleep(event.down)  # a started outage always ends with everything restarted
        ordered = sorted(event.targets, key=lambda t: (t not in SERVERS, t))
        for target in ordered:
            for attempt in range(3):
                try:
                    self._start(target)
                    break
                except Exception as exc:  # record, retry: a target left down would ruin the run
                    outage.error = f"{target}: {type(exc).__name__}: {str(exc)[:300]}"
                    self.failures.append(outage.error)
                    self.say(f"restart of {target} failed (attempt {attempt + 1}): {outage.error}")
                    time.sleep(2)
        outage.restored_at = time.monotonic()
        self.say(f"t={outage.restored_at - self._started:6.1f}s {event.label} back")

    def _server(self, target: str) -> Any:
        """The server object (`start()` and `kill()`) behind a target name."""
        servers = {"nats": self.stack.nats, "postgres": self.stack.postgres, "openbao": self.stack.vault}
        if target not in servers:
            raise ValueError(target)
        return servers[target]

    def _kill(self, target: str) -> None:
        if target in SERVICES or target == KUBE_API:
            self.stack.kill_service(target)
        else:
            self._server(target).kill()

    def _start(self, target: str) -> None:
        if target == KUBE_API:
            self.stack.restart_service(target)
            wait_until(lambda: _answers(self.stack.sandbox_url + "/version"), timeout=30, what=target)
        elif target in SERVICES:
            self.stack.restart_service(target)
        else:
            self._server(target).start()


def _answers(url: str) -> bool:
    try:
        return http("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:g} s")
        time.sleep(0.1)


@dataclass(frozen=True)
class Kills:
    """Which kill events a run has: every target alone `singles_each` times, `pairs` events that
    take two down together, and with `agent_away` one minute without the agent; each down for a
    random time within `down` seconds."""

    singles_each: int
    pairs: int
    agent_away: bool
    targets: tuple[str, ...] = TARGETS
    down: tuple[float, float] = (1.0, 6.0)


def schedule(duration: float, kills: Kills, *, seed: int) -> list[Event]:
    """The events of `kills` at random moments in the middle 80 % of `duration`, spaced so that
    they do not overlap."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    kinds: list[tuple[tuple[str, ...], float]] = []
    for _ in range(kills.singles_each):
        kinds += [((t,), rng.uniform(*kills.down)) for t in kills.targets]
    for i in range(kills.pairs):
        kinds.append((PAIRS[i % len(PAIRS)], rng.uniform(*kills.down)))
    if kills.agent_away:
        kinds.append((("data_plane_agent",), AGENT_AWAY_SECONDS))
    rng.shuffle(kinds)
    lengths = [seconds + EVENT_SECONDS for _, seconds in kinds]
    start, end = 0.1 * duration, 0.9 * duration
    slack = max(0.0, (end - start) - sum(lengths))
    # Random gaps that add up to the slack: random moments, no overlap.
    cuts = sorted(rng.uniform(0, slack) for _ in kinds)
    events = []
    at = start
    previous_cut = 0.0
    for (targets_, seconds), length, cut in zip(kinds, lengths, cuts, strict=True):
        at += cut - previous_cut
        previous_cut = cut
        events.append(Event(at=round(at, 1), targets=targets_, down=round(seconds, 1)))
        at += length
    return events
