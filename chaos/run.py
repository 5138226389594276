"""`python -m chaos.run [--quick]`: start a stack, break it, measure, print, exit 0 only if nothing was lost.

Order: the crash run first (on a fresh stack, so its figures are its own), then
the tenancy matrix, then the hostile input, and the secret scan last, so that it
covers the logs, messages and rows of everything before it. The cluster part
(chaos/cluster.py) runs after them on a stack of its own (three nats-servers, two
replicas of each service), started once the first stack is stopped: the two
would share two cores.

`--quick` is the size `make test` runs (tests/e2e/test_chaos_quick.py and its
siblings use the same functions); the default is the size of the issue: 10,000
webhooks across 200 components with every kind of kill, and 10,000 hostile
requests per service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos import cluster, crash, hostile, hostile_verdict, secrets_scan, tenancy
from chaos.stack import ChaosStack, start

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Sizes:
    crash: crash.CrashPlan
    hostile: hostile.Plan
    cluster: cluster.ClusterPlan


FULL = Sizes(crash=crash.FULL, hostile=hostile.FULL, cluster=cluster.FULL)
QUICK = Sizes(crash=crash.QUICK, hostile=hostile.QUICK, cluster=cluster.QUICK)


def say(line: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {line}", flush=True)


async def run_all(chaos: ChaosStack, sizes: Sizes, workdir: Path, parts: set[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(), "parts": sorted(parts)}
    used: set[str] = set()
    t0 = time.monotonic()
    if "crash" in parts:
        say("part 1: crashes")
        outcome = await crash.run(chaos, sizes.crash, say=say)
        used |= outcome.fleet.secrets
        results["crash"] = {**outcome.figures, "ok": outcome.ok, "samples": outcome.samples}
    if "tenancy" in parts:
        say("part 3a: tenancy matrix")
        matrix, tenancy_secrets = await tenancy.run(chaos, say=say)
        used |= tenancy_secrets
        results["tenancy"] = {
            "operations": matrix.operations,
            "requests": len(matrix.cases),
            "breaches": matrix.tenancy_breaches,
            "variants": matrix.variants,
            "broken_controls": [vars(c) for c in matrix.broken_controls],
            "samples": [vars(c) for c in matrix.breaches[:30]] + [{"integrity": p} for p in matrix.integrity],
        }
    if "hostile" in parts:
        say("part 2: hostile input (schemathesis)")
        results["hostile"] = {}
        for index, service in enumerate(hostile.SERVICES):
            tenant = await hostile.prepare(chaos.stack, f"fuzz-{index}-{secrets.token_hex(3)}")
            used |= {tenant.ci_token, tenant.api_key}
            result = await asyncio.to_thread(
                hostile.fuzz_service,
                chaos.stack.url(service),
                service,
                tenant,
                workdir / "schemathesis" / service,
                min_requests=sizes.hostile.min_requests,
                max_examples=sizes.hostile.max_examples,
                budget_seconds=sizes.hostile.budget_seconds,
                seed=index + 1,
            )
            say(result.summary())
            results["hostile"][service] = result.evidence()
    if "secrets" in parts:
        say("part 3b: secret scan")
        scan = await secrets_scan.run(chaos, used)
        results["secrets"] = {
            "secrets": scan.secrets,
            "database_bytes": scan.database_bytes,
            "stream_messages": scan.streams,
            "log_files": scan.log_files,
            "log_lines": scan.log_lines,
            "found": scan.found,
            "samples": [vars(f) for f in scan.findings[:30]],
        }
    results["seconds"] = round(time.monotonic() - t0, 1)
    return results


async def run_cluster(ha: ChaosStack, plan: cluster.ClusterPlan) -> dict[str, Any]:
    say("part 4: the cluster (3 nats-servers, 2 replicas of each service)")
    outcome = await cluster.run(ha, plan, say=say)
    return {**outcome.figures, "ok": outcome.ok, "samples": outcome.samples}


def verdict(results: dict[str, Any]) -> dict[str, int]:
    """The figures the issue asks to be zero."""
    c = results.get("crash", {})
    k = results.get("cluster", {})
    five = c.get("5xx", 0) + k.get("5xx", 0) + sum(h["5xx"] for h in results.get("hostile", {}).values())
    return {
        "lost": c.get("lost", 0) + c.get("config_lost", 0) + k.get("lost", 0),
        "duplicated": c.get("duplicated", 0) + c.get("config_doubled", 0) + k.get("duplicated", 0),
        "5xx": five + c.get("config_5xx", 0),
        "tenancy breaches": results.get("tenancy", {}).get("breaches", 0),
        "secrets found": results.get("secrets", {}).get("found", 0),
    }


def problems(results: dict[str, Any], sizes: Sizes) -> list[str]:
    out = [f"{k} = {v}" for k, v in verdict(results).items() if v]
    c = results.get("crash")
    if c is not None and not c["ok"]:
        out.append("crash run: see extra/wrong_image/wrong_config/gave_up/unexpected/driver_failures above")
    k = results.get("cluster")
    if k is not None and not k["ok"]:
        out.append("cluster run: see its samples (idle replicas, 503 outside an outage, …) in latest.json")
    if results.get("tenancy", {}).get("broken_controls"):
        out.append("tenancy: the owner's own requests failed, so the refusals prove nothing")
    out += hostile_verdict.problems(results.get("hostile", {}), sizes.hostile.min_requests)
    return out


def render(results: dict[str, Any]) -> str:
    lines = []
    c = results.get("crash")
    if c:
        lines += [
            "",
            f"CRASHES  {c['webhooks']} webhooks over {c['components']} components",
            f"  kills: {', '.join(c['kills'])}",
            f"  accepted {c['accepted']}   succeeded {c['succeeded']}   superseded {c['superseded']}   "
            f"lost {c['lost']}   duplicated {c['duplicated']}",
            f"  responses by status: {json.dumps(c['responses'])}   connection errors (gateway down): "
            f"{c['connection_errors']}",
            f"  5xx (other than 503) {c['5xx']}   503 without Retry-After {c['503_without_retry_after']}   "
            f"503 outside an outage {c['503_outside_outages']}",
            f"  extra deployments {c['extra_deployments']}   wrong image running "
            f"{c['wrong_image_running']}   gave up {c['gave_up']}   "
            f"Deployment writes {c['deployment_writes']}",
            f"  config changes {c['config_changes']}   lost {c['config_lost']}   doubled "
            f"{c['config_doubled']}   wrong final config {c['wrong_config']}   answers "
            f"{json.dumps(c['config_responses'])}   refused {len(c['config_refused'])}",
            f"  seconds {json.dumps(c['seconds'])}",
        ]
    if results.get("cluster"):
        lines += cluster.render(results["cluster"])
    h = results.get("hostile")
    if h:
        lines += hostile_verdict.render(h)
    t = results.get("tenancy")
    if t:
        lines += [
            "",
            f"TENANCY  {t['requests']} requests over {t['operations']} operations   breaches {t['breaches']}",
            "  " + "   ".join(f"{k} {v}" for k, v in sorted(t["variants"].items())),
        ]
    s = results.get("secrets")
    if s:
        lines += [
            "",
            f"SECRETS  {s['secrets']} secrets looked for in a {s['database_bytes']} byte pg_dump, "
            f"{sum(s['stream_messages'].values())} JetStream messages, {s['log_lines']} lines of "
            f"{s['log_files']} logs   found {s['found']}",
        ]
    lines += ["", "  ".join(f"{k} = {v}" for k, v in verdict(results).items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short version `make test` runs")
    parser.add_argument("--parts", default="crash,tenancy,hostile,secrets,cluster")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where latest.json goes")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory (logs) afterwards")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="landfall-chaos-"))
    say(f"stack and logs in {workdir}")
    began = time.monotonic()
    password = "chaos-" + secrets.token_urlsafe(18)
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat()}
    if parts - {"cluster"}:
        chaos = start(workdir / "stack", private_password=password)
        try:
            results = asyncio.run(run_all(chaos, sizes, workdir, parts - {"cluster"}))
        finally:
            chaos.stop()
    if "cluster" in parts:
        ha = cluster.start(workdir / "cluster-stack", private_password=password)
        try:
            results["cluster"] = asyncio.run(run_cluster(ha, sizes.cluster))
        finally:
            ha.stop()
        results["parts"] = sorted(parts)
    results["quick"] = args.quick
    results["total_seconds"] = round(time.monotonic() - began, 1)
    print(render(results), flush=True)
    bad = problems(results, sizes)
    results["problems"] = bad
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    say(f"{'FAILED: ' + '; '.join(bad) if bad else 'all clear'} (in {results['total_seconds']:.0f} s)")
    if args.keep or bad:
        say(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
