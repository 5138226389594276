"""`python -m bench.run [--quick] [--output DIR]`: start the stack, measure, print, write JSON.

The stack starts as the e2e tests start it (`bench.stack`) and the services'
idle memory is recorded; then the parts in `PARTS` run in that order on the
same stack, each writing its own section of the result, while a 1-second
sampler watches the services' memory; last, their memory after the run and
the peak. Adding a part is one function of a `bench.stack.Run` and one line in
`PARTS`; where it stands in the list matters, because every part inherits what
the earlier ones left (deployments, a backlog, warm caches).

A part that raises `BenchError`, `ApiError` or `WrkMissing` fails the run: the
stack's logs are then kept and the exit status is 1, and no result is written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import access, cli_overhead, console, footprint, ha, intake, latency, report, scale
from bench.client import ApiError
from bench.plan import FULL, QUICK
from bench.stack import BenchError, Clock, Part, Run, server_pids, service_pids, start_stack
from libs.devstack.stack import Stack

RESULTS = Path(__file__).resolve().parent / "results"

PARTS: tuple[tuple[str, Part], ...] = (
    # First, on a quiet stack: a management read with the org key against the platform token.
    ("access", access.part),
    # The web console's pages (200 components in an org of their own) against the same API calls.
    ("console", console.part),
    # Components in org `default` on the stack's data plane, at 50/s and at 10/s.
    ("latency", latency.part),
    # The HA stack (3 nats-servers, 2 replicas) beside this one, same deploys; before any backlog.
    ("ha", ha.part),
    # The same with 10, 100 and 1,000 data planes, their agents in one extra process.
    ("scale", scale.part),
    # `landfall deploy --tag … --wait` (a subprocess) against the same deploys over plain HTTP.
    ("cli_overhead", cli_overhead.part),
    # Last: every webhook it gets accepted is a real deployment the orchestrator then works through.
    ("intake", intake.part),
)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": intake.wrk_version(),
    }


def write_results(result: dict[str, Any], output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(result["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    path = output / f"{stamp}.json"
    text = json.dumps(result, indent=2) + "\n"
    for target in (path, output / "latest.json"):
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(target)
    return path


def measure_all(run: Run, services: dict[str, int], parts: tuple[tuple[str, Part], ...] = PARTS) -> None:
    """Every part in order, with the services' memory idle, sampled throughout, and after."""
    idle = footprint.memory(services)
    with footprint.Sampler(services) as sampler:
        for name, part in parts:
            run.clock.say(f"part: {name}")
            part(run)
    after = footprint.memory(services)
    run.result["footprint"] = {
        "idle_mb": idle,
        "after_mb": after,
        "peak_mb": sampler.peak,
        "idle_total_mb": round(sum(idle.values()), 1),
        "after_total_mb": round(sum(after.values()), 1),
        "peak_total_mb": sampler.peak_total,
        "servers_after_mb": footprint.memory(server_pids(run.stack)),
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts, a few seconds per part (the smoke test)"
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help="where <timestamp>.json and latest.json go"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) afterwards")
    parser.add_argument(
        "--planes",
        help="data-plane counts for the scale part, e.g. 10,100 (default: 10,100,1000; quick: 2,4)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated parts to run, e.g. latency (while working on one figure): its JSON is "
        "printed and written to --output, never to bench/results, and no targets are judged",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = QUICK if args.quick else FULL
    parts = PARTS
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = wanted - {name for name, _ in PARTS}
        if unknown:
            print(
                f"unknown parts: {', '.join(sorted(unknown))}; choose from {', '.join(n for n, _ in PARTS)}"
            )
            return 2
        parts = tuple((name, part) for name, part in PARTS if name in wanted)
        if args.output == RESULTS:
            args.output = Path(tempfile.mkdtemp(prefix="landfall-bench-only-"))
    if args.planes:
        plan = replace(plan, scale_planes=tuple(int(n) for n in args.planes.split(",") if n.strip()))
    clock = Clock()
    result: dict[str, Any] = {
        "schema": 1,
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": asdict(plan),
        "machine": machine(),
    }
    base = set(result)  # with --only, what the parts add is printed
    root = Path(tempfile.mkdtemp(prefix="landfall-bench-"))
    stack: Stack | None = None
    ok = False
    try:
        stack = start_stack(root / "stack", clock, tags=latency.TAGS)
        services = service_pids(stack)
        run = Run(stack, plan, root, clock, {**services, **server_pids(stack)}, result)
        measure_all(run, services, parts)
        ok = True
    except (BenchError, ApiError, intake.WrkMissing) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
    finally:
        if stack is not None:
            clock.say("stopping the stack")
            stack.stop()
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"logs and state kept in {root}", file=sys.stderr)
    if not ok:
        return 1
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["duration_s"] = round(time.monotonic() - clock.started, 1)
    if args.only:
        path = write_results(result, args.output)
        print(json.dumps({k: v for k, v in result.items() if k not in base}, indent=1))
        print(f"\nwritten: {path}")
        return 0
    result["targets"] = report.targets(result)
    path = write_results(result, args.output)
    print(report.render_text(result))
    print("\n" + ha.render(result))
    print(f"\nwritten: {path} (and {args.output / 'latest.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
