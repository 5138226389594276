"""Intake throughput with wrk: how many webhooks per second are accepted (202).

Why wrk (Debian's `wrk` 4.1, installed by `make deps`): it is a small C program
on epoll with LuaJIT request scripting, so at thousands of requests per second
it needs a fraction of a core, which matters when the load generator shares 2
cores with the servers it measures. Python generators (locust, an aiohttp loop)
spend more CPU per request than the floor server itself and would cap the
floor, hiding the very ratio we want. `hey` (Go) is packaged too but allocates
per request and has no scripting hook for rotating CI tokens.

The Lua script rotates over the CI tokens of many components (one deployment
per accepted request, on many components, as real CI traffic would be) and
prints wrk's summary as one JSON line. Both targets get byte-identical
requests; the floor ignores the token.

The intake part (`part`) runs last in `make bench`, because every accepted
webhook is a real deployment the orchestrator then works through. It measures
the floor first, then the gateway twice: alone (the orchestrator SIGSTOPped,
so nothing downstream runs, as for the floor) and with the pipeline consuming
what it accepts (the two then share 2 cores, which is part of what the gateway
competes with on a real machine; the CPU each process used during each window
is recorded, so that share is visible).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import footprint, latency
from bench.client import Admin
from bench.procs import Child, paused, wait_http, write_secret_lines
from bench.stack import Run
from libs.devstack.stack import free_ports

WRK_SCRIPT = r"""
-- Landfall bench: POST one webhook per request, rotating over the CI tokens in args[1].
local requests = {}
local n = 0
local i = 0

function init(args)
  local body = args[2]
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("POST", wrk.path, {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. line,
      }, body)
    end
  end
  -- threads start at different tokens
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


class WrkMissing(RuntimeError):
    pass


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]  # wrk's counts by kind; "status" counts the answers >= 400
    latency_ms: dict[str, float]
    cpu_seconds: dict[str, float]  # wrk's own ("wrk") and each measured process's

    @property
    def accepted(self) -> int:
        return self.requests - self.errors["status"]

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted_per_s": round(self.accepted_per_s, 1),
            "requests": self.requests,
            "accepted": self.accepted,
            "duration_s": round(self.duration_s, 2),
            "errors": self.errors,
            "latency_ms": self.latency_ms,
            "cpu_seconds": self.cpu_seconds,
        }


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise WrkMissing(
            "wrk is not installed: `make deps` installs it (apt-get install wrk), or install it yourself"
        ) from None
    return (out.stdout or out.stderr).splitlines()[0].strip()


def run_wrk(
    url: str,
    *,
    tokens_file: Path,
    body: Mapping[str, Any],
    script_dir: Path,
    connections: int,
    threads: int,
    duration_s: float,
    cpu_probe: Callable[[], dict[str, float]],
) -> WrkResult:
    """Run wrk against `url`; counts only 2xx/3xx answers as accepted (wrk's status errors are ≥ 400)."""
    script = script_dir / "webhook.lua"
    script.write_text(WRK_SCRIPT)
    argv = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        "--timeout=10s",
        f"--script={script}",
        url,
        "--",
        str(tokens_file),
        json.dumps(dict(body)),
    ]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = cpu_probe()
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    wall = time.monotonic() - started
    cpu_after = cpu_probe()
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    duration = raw["duration_us"] / 1e6 or wall
    errors = {k: int(v) for k, v in raw["errors"].items()}
    lat = raw["latency_us"]
    wrk_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    return WrkResult(
        requests=int(raw["requests"]),
        duration_s=duration,
        errors=errors,
        latency_ms={k: round(float(v) / 1000, 2) for k, v in lat.items()},
        cpu_seconds={
            "wrk": round(wrk_cpu, 2),
            **{k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after},
        },
    )


async def _make_targets(run: Run) -> None:
    """`--only intake`: the components the latency part would have made (`_refresh` warms them)."""
    async with run.session() as session:
        await latency.make_targets(run, Admin.for_stack(session, run.stack))


async def _refresh(run: Run) -> None:
    """One deploy per component, waited for: the gateway's token and component caches are fresh."""
    async with run.session() as session:
        await latency.warm_up(latency.Driver.for_run(session, run), run.targets, "before intake")


def _ratio(measured: WrkResult, floor: WrkResult) -> float:
    return measured.accepted_per_s / floor.accepted_per_s if floor.accepted_per_s else 0.0


def part(run: Run) -> None:
    """`intake`: the floor, the gateway alone, the gateway with the pipeline, over `run.targets`."""
    stack, size, root, say, pids = run.stack, run.plan, run.root, run.clock.say, run.pids
    if not run.targets:
        asyncio.run(_make_targets(run))
    tokens_file = write_secret_lines(root / "ci-tokens.txt", [t.token for t in run.targets])
    (port,) = free_ports(1)
    # The floor makes and deletes its own stream, which the gateway's narrowed NATS user may not: it
    # gets a full user (publishing is what it measures, and costs the same under any permissions).
    creds = str(stack.nats_auth.creds_file("bench-floor"))
    floor = Child(
        "floor",
        [
            sys.executable,
            "-m",
            "bench.floor",
            "--port",
            str(port),
            "--nats-url",
            stack.nats.url,
            "--prefix",
            stack.bus_prefix,
            "--nats-creds",
            creds,
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        logs=root / "logs",
    )
    common: dict[str, Any] = {
        "tokens_file": tokens_file,
        "body": {"tag": latency.TAGS[0]},
        "script_dir": root,
        "connections": size.intake_connections,
        "threads": size.wrk_threads,
        "duration_s": size.intake_seconds,
    }
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", "the floor server", child=floor)
        say(f"intake: floor, {size.intake_connections} connections for {size.intake_seconds:g} s")
        floor_pids = {**pids, "floor": floor.pid}
        base = run_wrk(
            f"http://127.0.0.1:{port}/v1/webhooks/deploy",
            cpu_probe=lambda: footprint.cpu(floor_pids),
            **common,
        )
    finally:
        floor.stop()
    say(f"intake: floor accepted {base.accepted_per_s:,.0f}/s; now the gateway alone")
    asyncio.run(_refresh(run))
    url = f"{stack.url('webhook_gateway')}/v1/webhooks/deploy"
    with paused(pids["orchestrator"]):
        alone = run_wrk(url, cpu_probe=lambda: footprint.cpu(pids), **common)
    ratio = _ratio(alone, base)
    say(f"intake: gateway alone accepted {alone.accepted_per_s:,.0f}/s ({ratio:.2f}); now with the pipeline")
    busy = run_wrk(url, cpu_probe=lambda: footprint.cpu(pids), **common)
    busy_ratio = _ratio(busy, base)
    say(f"intake: gateway with the pipeline accepted {busy.accepted_per_s:,.0f}/s ({busy_ratio:.2f})")
    run.result["intake"] = {
        "connections": size.intake_connections,
        "wrk_threads": size.wrk_threads,
        "duration_s": size.intake_seconds,
        "components": len(run.targets),
        "floor": base.as_dict(),
        "gateway": alone.as_dict(),
        "gateway_with_pipeline": busy.as_dict(),
        "ratio": round(ratio, 3),
        "ratio_with_pipeline": round(busy_ratio, 3),
    }
