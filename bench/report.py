"""The results as a table: `python -m bench.report [results.json] [--markdown]`.

`targets` judges a result against the issue's targets; both renderings show
every figure beside its target, so a missed one is plain. The JSON written by
`bench.run` is the source; this module only reads it (default:
`bench/results/latest.json`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

Result = dict[str, Any]

TARGET_RATIO = 0.8
TARGET_P50_MS = 15.0
TARGET_P99_MS = 50.0
TARGET_GROWTH = 2.0
TARGET_MEMORY_MB = 300.0
TARGET_KEY_CHECK_MS = 1.0
TARGET_CONFIG_RATIO = 1.10


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def growth(result: Result) -> float | None:
    levels = result.get("scale", {}).get("levels", [])
    if len(levels) < 2 or any("error" in level for level in (levels[0], levels[-1])):
        return None
    first, last = levels[0]["e2e_ms"].get("p99"), levels[-1]["e2e_ms"].get("p99")
    if not first or last is None:
        return None
    return round(float(last) / float(first), 2)


def targets(result: Result) -> list[dict[str, Any]]:
    """Each target with its measured value and whether it was met."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, op: str, limit: float) -> None:
        met = (
            False
            if value is None
            else (value >= limit if op == ">=" else value <= limit if op == "<=" else value < limit)
        )
        checks.append({"name": name, "value": value, "target": f"{op} {limit:g}", "met": met})

    check("intake gateway / floor", result["intake"]["ratio"], ">=", TARGET_RATIO)
    e2e = result["latency"]["e2e_ms"]
    check("latency p50 (ms)", e2e.get("p50"), "<=", TARGET_P50_MS)
    check("latency p99 (ms)", e2e.get("p99"), "<=", TARGET_P99_MS)
    levels = result["scale"]["levels"]
    first, last = (levels[0]["dataplanes_total"], levels[-1]["dataplanes_total"]) if levels else (0, 0)
    check(f"scale p99 growth {first} -> {last} data planes (x)", growth(result), "<", TARGET_GROWTH)
    if "access" in result:
        check(
            "API key check, p50 over the platform token (ms)",
            result["access"]["difference_p50_ms"],
            "<",
            TARGET_KEY_CHECK_MS,
        )
    if "latency_config" in result:
        check(
            "latency p50 with per-environment config and secrets / without (x)",
            result["latency_config"]["p50_ratio"],
            "<=",
            TARGET_CONFIG_RATIO,
        )
    if "cli_overhead" in result:
        check(
            "landfall deploy --wait over plain HTTP, p50 (ms)",
            result["cli_overhead"]["overhead_ms"]["p50"],
            "<",
            result["cli_overhead"]["target_ms"],
        )
    check(
        "memory of the four services after the run (MB)",
        result["footprint"]["after_total_mb"],
        "<=",
        TARGET_MEMORY_MB,
    )
    return checks


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else "met" if met else "MISSED"


def _config_row(config: dict[str, Any]) -> str:
    """The config measure's row: its rate, both p50s and both groups' CPU per deploy."""
    with_, without = config["with_config"], config["without_config"]
    cpu = [group.get("cpu_ms_per_deploy", {}).get("total") for group in (with_, without)]
    return (
        f"latency p50 with config and secrets / without, same run, {with_['rate_per_s']:g}/s "
        f"({_fmt(with_['e2e_ms'].get('p50'), ' ms', 1)} / {_fmt(without['e2e_ms'].get('p50'), ' ms', 1)}; "
        f"CPU per deploy {_fmt(cpu[0], '', 1)} / {_fmt(cpu[1], ' ms', 1)})"
    )


def rows(result: Result) -> tuple[list[list[str]], ...]:
    """The tables (summary, hops, CPU per deploy, memory) as rows of strings."""
    checks = {c["name"].split(" (")[0]: c for c in result.get("targets") or targets(result)}
    intake = result["intake"]
    lat = result["latency"]
    levels = result["scale"]["levels"]
    fp = result["footprint"]

    def verdict(prefix: str) -> str:
        return next((_verdict(c["met"]) for name, c in checks.items() if name.startswith(prefix)), "")

    cpu = lat.get("cpu_ms_per_deploy") or {}
    unloaded = result["latency_unloaded"]
    summary = [
        ["what", "result", "target", "verdict"],
        [
            f"intake, floor: bare aiohttp + JetStream ({intake['connections']} connections, "
            f"{intake['duration_s']:g} s)",
            _fmt(intake["floor"]["accepted_per_s"], " /s", 0),
            "",
            "",
        ],
        [
            "intake, gateway alone (orchestrator paused)",
            _fmt(intake["gateway"]["accepted_per_s"], " /s", 0),
            "",
            "",
        ],
        ["intake, gateway / floor", _fmt(intake["ratio"], "", 2), f">= {TARGET_RATIO}", verdict("intake")],
        [
            "intake, gateway with the pipeline consuming (/ floor)",
            f"{_fmt(intake['gateway_with_pipeline']['accepted_per_s'], ' /s', 0)} "
            f"({_fmt(intake['ratio_with_pipeline'], '', 2)})",
            "",
            "",
        ],
        [
            f"latency p50 / p95 / p99, 1 data plane ({lat['succeeded']} deploys at {lat['rate_per_s']:g}/s, "
            f"{lat['components']} components)",
            " / ".join(_fmt(lat["e2e_ms"].get(k), "", 1) for k in ("p50", "p95", "p99")) + " ms",
            f"p50 <= {TARGET_P50_MS:g}, p99 <= {TARGET_P99_MS:g}",
            f"{verdict('latency p50')} / {verdict('latency p99')}",
        ],
        [
            f"latency p50 / p95 / p99, 1 data plane, unloaded ({unloaded['succeeded']} deploys at "
            f"{unloaded['rate_per_s']:g}/s)",
            " / ".join(_fmt(unloaded["e2e_ms"].get(k), "", 1) for k in ("p50", "p95", "p99")) + " ms",
            "",
            "",
        ],
        *(
            [
                [
                    _config_row(result["latency_config"]),
                    _fmt(result["latency_config"]["p50_ratio"], "", 2),
                    f"<= {TARGET_CONFIG_RATIO:g}",
                    verdict("latency p50 with per-environment config"),
                ]
            ]
            if "latency_config" in result
            else []
        ),
        [
            "slowest hop (mean)",
            f"{lat['slowest_hop']} ({_fmt(lat['hops_ms'][lat['slowest_hop']]['mean'], ' ms', 1)})"
            if lat.get("slowest_hop")
            else "n/a",
            "",
            "",
        ],
        [
            "CPU per deploy, all processes (machine busy)",
            f"{_fmt(cpu.get('total'), ' ms', 1)} ({_fmt(100 * lat.get('cpu_busy', 0.0), ' %', 0)})",
            "",
            "",
        ],
    ]
    for level in levels:
        if "error" in level:
            error = level["error"].strip().splitlines()[-1][:80]
            summary.append([f"latency, {level['dataplanes_total']:,} data planes", "FAILED", "", error])
            continue
        e2e = level["e2e_ms"]
        summary.append(
            [
                f"latency p50 / p95 / p99, {level['dataplanes_total']:,} data planes "
                f"({level['succeeded']} deploys, {level['components']} components)",
                " / ".join(_fmt(e2e.get(k), "", 1) for k in ("p50", "p95", "p99")) + " ms",
                "",
                "",
            ]
        )
    if len(levels) >= 2:
        summary.append(
            [
                f"p99 growth {levels[0]['dataplanes_total']:,} -> "
                f"{levels[-1]['dataplanes_total']:,} data planes",
                _fmt(growth(result), "x", 2),
                f"< {TARGET_GROWTH:g}x",
                verdict("scale"),
            ]
        )
    access = result.get("access")
    if access:
        summary.append(
            [
                f"management read p50, org key / platform token ({access['requests_each']:,} each, "
                "alternating; the key cached)",
                " / ".join(_fmt(access[side]["p50"], "", 2) for side in ("api_key_ms", "platform_ms"))
                + f" ms (+{_fmt(access['difference_p50_ms'], ' ms', 3)})",
                f"+ < {TARGET_KEY_CHECK_MS:g} ms",
                verdict("API key check"),
            ]
        )
    cli = result.get("cli_overhead")
    if cli:
        ways, extra = (cli["cli_ms"], cli["http_ms"]), cli["overhead_ms"]
        summary.append(
            [
                f"landfall deploy --wait / plain HTTP ({cli['deploys']} deploys each, alternating)",
                f"p50 {' / '.join(_fmt(w['p50']) for w in ways)}, "
                f"p95 {' / '.join(_fmt(w['p95']) for w in ways)} ms "
                f"(+{_fmt(extra['p50'])} p50, +{_fmt(extra['p95'])} p95; "
                f"its CPU p50 {_fmt((cli.get('cli_cpu_ms') or {}).get('p50'))} ms)",
                f"+ < {cli['target_ms']:g} ms p50",
                verdict("landfall deploy"),
            ]
        )
    summary.append(
        [
            "memory, four services idle / after / peak",
            f"{_fmt(fp['idle_total_mb'])} / {_fmt(fp['after_total_mb'])} / {_fmt(fp['peak_total_mb'])} MB",
            f"<= {TARGET_MEMORY_MB:g} MB",
            verdict("memory"),
        ]
    )

    levels = [level for level in levels if "error" not in level]
    unloaded = result["latency_unloaded"]
    hops = [["hop (ms)", f"{unloaded['rate_per_s']:g}/s p50", "1 plane p50", "p95", "p99"]]
    for level in levels:
        hops[0].append(f"{level['dataplanes_total']:,} planes p99")
    for name, hop in lat["hops_ms"].items():
        line = [
            f"{name}: {hop['what']}",
            _fmt(unloaded["hops_ms"][name].get("p50"), "", 2),
            *(_fmt(hop.get(k), "", 2) for k in ("p50", "p95", "p99")),
        ]
        line += [_fmt(level["hops_ms"][name].get("p99"), "", 2) for level in levels]
        hops.append(line)
    hops.append(
        ["end to end", _fmt(unloaded["e2e_ms"].get("p50"), "", 2)]
        + [_fmt(lat["e2e_ms"].get(k), "", 2) for k in ("p50", "p95", "p99")]
        + [_fmt(level["e2e_ms"].get("p99"), "", 2) for level in levels]
    )

    cpu_table = [
        ["CPU ms per deploy", "1 plane", *(f"{level['dataplanes_total']:,} planes" for level in levels)]
    ]
    for name in cpu:
        cpu_table.append(
            [
                name,
                _fmt(cpu[name], "", 1),
                *(_fmt((level.get("cpu_ms_per_deploy") or {}).get(name), "", 1) for level in levels),
            ]
        )
    for name in ("fleet", "fleet sandbox"):
        if any(name in (level.get("cpu_ms_per_deploy") or {}) for level in levels):
            cpu_table.insert(
                -1,
                ["  " + name, "", *(_fmt(level["cpu_ms_per_deploy"].get(name), "", 1) for level in levels)],
            )

    memory = [["service", "idle MB", "after MB", "peak MB"]]
    for name, idle in fp["idle_mb"].items():
        memory.append([name, _fmt(idle), _fmt(fp["after_mb"][name]), _fmt(fp["peak_mb"][name])])
    memory.append(
        ["four services", _fmt(fp["idle_total_mb"]), _fmt(fp["after_total_mb"]), _fmt(fp["peak_total_mb"])]
    )
    return summary, hops, cpu_table, memory


def _text_table(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) if i < len(row) else 0 for row in table) for i in range(len(table[0]))]
    lines = []
    for n, row in enumerate(table):
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(table: list[list[str]]) -> str:
    head, *body = table
    align = ["---"] + ["---:"] * (len(head) - 1)
    out = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out)


def _header(result: Result) -> str:
    m = result["machine"]
    return (
        f"Landfall benchmarks, {result['started_at']} "
        f"({result['command']}, {result.get('duration_s', '?')} s), "
        f"{m['cpus']} CPUs {m['cpu_model']}, Python {m['python']}, {m['wrk'].split(' [')[0]}"
    )


def render_text(result: Result) -> str:
    return "\n\n".join([_header(result), *(_text_table(table) for table in rows(result))])


def render_markdown(result: Result) -> str:
    return "\n\n".join([_header(result), *(_markdown_table(table) for table in rows(result))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "path", nargs="?", type=Path, default=Path(__file__).resolve().parent / "results" / "latest.json"
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    result = json.loads(args.path.read_text())
    print(render_markdown(result) if args.markdown else render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
