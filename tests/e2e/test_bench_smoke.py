"""`make bench` keeps working: a tiny run (`--quick`) of the real thing, with its JSON checked.

Nothing here asserts on speed: the figures depend on the machine. It checks that
every section is there and holds numbers, so that a change to a service or to
the stack that breaks the benchmark shows up in `make test`, not months later.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _latency_section(section: dict[str, Any]) -> None:
    assert section["succeeded"] == section["deploys"] > 0, section["errors"]
    for key in ("p50", "p95", "p99", "max", "mean"):
        assert _number(section["e2e_ms"][key])
        assert section["e2e_ms"][key] > 0
    hops = section["hops_ms"]
    assert set(hops) == {"gateway", "intake", "dispatch", "apply", "rollout", "status", "answer"}
    for name, hop in hops.items():
        assert hop["count"] == section["succeeded"], name
        assert all(_number(hop[k]) for k in ("p50", "p95", "p99")), name
    assert section["slowest_hop"] in hops


@pytest.mark.timeout(600)
def test_a_quick_bench_run_writes_every_section_with_numbers(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gateway / floor" in proc.stdout  # the table was printed

    latest = json.loads((out / "latest.json").read_text())
    (stamped,) = (p for p in out.glob("*.json") if p.name != "latest.json")
    assert json.loads(stamped.read_text()) == latest

    intake = latest["intake"]
    for side in ("floor", "gateway", "gateway_with_pipeline"):
        assert intake[side]["accepted"] > 0
        assert _number(intake[side]["accepted_per_s"])
    assert _number(intake["ratio"])
    assert intake["ratio"] > 0

    _latency_section(latest["latency"])
    _latency_section(latest["latency_unloaded"])
    ha = latest["ha"]  # the HA stack (3 nats-servers, 2 replicas) beside this run's single node
    assert (ha["nats_nodes"], ha["replicas"]) == (3, 2)
    _latency_section(ha["single"])
    _latency_section(ha["ha"])
    assert "HA stack" in proc.stdout
    assert latest["latency"]["cpu_ms_per_deploy"]["total"] > 0
    levels = latest["scale"]["levels"]
    assert [level["dataplanes_total"] for level in levels] == list(latest["plan"]["scale_planes"])
    for level in levels:
        assert "error" not in level, level.get("error")
        _latency_section(level)
        assert level["fleet"]["agents"] == level["dataplanes_total"]

    cli = latest["cli_overhead"]  # landfall deploy --wait against plain HTTP
    assert cli["cli_ms"]["count"] == cli["http_ms"]["count"] == cli["deploys"] > 0
    assert all(_number(cli[side][k]) for side in ("cli_ms", "http_ms") for k in ("p50", "p95"))
    assert _number(cli["overhead_ms"]["p50"])

    access = latest["access"]  # a management read with the org key against the platform token
    assert access["api_key_ms"]["count"] == access["platform_ms"]["count"] == access["requests_each"] > 0
    assert _number(access["difference_p50_ms"])

    footprint = latest["footprint"]
    services = {"webhook_gateway", "orchestrator", "credentials", "data_plane_agent"}
    for key in ("idle_mb", "after_mb", "peak_mb"):
        assert set(footprint[key]) == services
        assert all(_number(v) and v > 0 for v in footprint[key].values())
    assert {t["name"].split(" (")[0] for t in latest["targets"]} >= {"intake gateway / floor", "latency p50"}
    assert all(_number(t["value"]) for t in latest["targets"])
