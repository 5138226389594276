"""What `landfall deploy --tag … --wait` adds to webhook → succeeded (target: < 150 ms at p50).

On a running stack, one component of its own (anonymous local registry, two tags, a CI token)
is deployed `deploys` times through the installed CLI (`landfall deploy --tag T --wait -o json`
as a subprocess, the way a CI job runs it: process start, imports, POST, long-poll) and
`deploys` times through plain HTTP (the webhook POST and the long-poll `?wait=30`, from this
process, on a kept-alive connection), alternating, one at a time, both through the stack's one
address (`LANDFALL_URL`). Each is timed from start to final answer; the result holds p50/p95 of
both and their differences, and the CPU time of the CLI's processes with the machine's load, for
the wall-clock figures of a shared machine move with whatever else runs on it.

`python -m bench.cli_overhead` starts a stack of its own and prints the result.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.stack import Run
from bench.stats import summary
from libs.devstack.stack import Stack

LANDFALL = Path(sys.executable).parent / "landfall"
TAGS = ("1.0", "1.1")
TARGET_MS = 150.0


class _Http:
    """The CI job without the CLI: webhook POST, then long-poll, on one kept-alive connection."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def _call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers={**self.headers, **(headers or {})})
        response = self.conn.getresponse()
        raw = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path} answered {response.status}: {raw[:300]!r}")
        return json.loads(raw)

    def deploy(self, tag: str) -> dict[str, Any]:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        accepted = self._call("POST", "/v1/webhooks/deploy", {"tag": tag}, key)
        state: dict[str, Any] = {}
        for _ in range(10):
            state = self._call("GET", f"/v1/webhooks/deployments/{accepted['deployment_id']}?wait=30")
            if state["status"] in ("succeeded", "failed", "superseded"):
                break
        return state

    def close(self) -> None:
        self.conn.close()


def _setup(stack: Stack) -> str:
    """A component of its own with two pushed tags; its CI token."""
    name = "clibench" + uuid.uuid4().hex[:6]
    repo = f"bench/{name}"
    for tag in TAGS:
        stack.registry.push_image(repo, tag)
    reg = stack.api(
        "credentials",
        "POST",
        "/v1/orgs/default/registries",
        {"display_name": name, "auth": {"type": "anonymous", "host": stack.registry.host}},
    )
    stack.api(
        "orchestrator",
        "POST",
        "/v1/orgs/default/projects/default/components",
        {
            "name": name,
            "type": "service",
            "registry_id": reg["id"],
            "image": f"{stack.registry.host}/{repo}:{TAGS[0]}",
            "port": 8080,
        },
    )
    token = stack.api(
        "webhook_gateway", "POST", f"/v1/orgs/default/projects/default/components/{name}/tokens", {}
    )
    return str(token["token"])


def _children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _cli_deploy(url: str, token: str, tag: str, home: Path, cpu_ms: list[float]) -> dict[str, Any]:
    """One `landfall deploy --wait` as a CI job runs it; its CPU time (user + system) goes to `cpu_ms`."""
    # PYTHONDONTWRITEBYTECODE is dropped: an installed landfall runs from the bytecode pip compiled,
    # while an editable install under that variable would compile libs/cli anew on every run
    # (~13 ms that no user pays); the warm-up runs write it.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LANDFALL_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        {"LANDFALL_URL": url, "LANDFALL_TOKEN": token, "HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    )
    cpu_before = _children_cpu_ms()
    proc = subprocess.run(
        [str(LANDFALL), "deploy", "--tag", tag, "--wait", "--timeout", "60", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    cpu_ms.append(_children_cpu_ms() - cpu_before)
    if proc.returncode != 0:
        raise RuntimeError(f"landfall deploy exited {proc.returncode}: {proc.stderr[-500:]}")
    state: dict[str, Any] = json.loads(proc.stdout)
    return state


def measure(stack: Stack, *, deploys: int = 20, warmup: int = 2) -> dict[str, Any]:
    """p50/p95 of `deploys` CLI deploys and `deploys` plain-HTTP deploys, alternating, and the gap."""
    url = stack.front_url
    token = _setup(stack)
    plain = _Http(url, token)
    cli_ms: list[float] = []
    http_ms: list[float] = []
    cpu_ms: list[float] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="landfall-cli-bench-") as tmp:
        home = Path(tmp)
        try:
            for i in range(warmup + deploys):
                tag = TAGS[i % 2]
                order = ("cli", "http") if i % 2 == 0 else ("http", "cli")  # neither always goes first
                for way in order:
                    started = time.perf_counter()
                    state = _cli_deploy(url, token, tag, home, cpu_ms) if way == "cli" else plain.deploy(tag)
                    elapsed = (time.perf_counter() - started) * 1000
                    if state.get("status") != "succeeded":
                        raise RuntimeError(f"{way} deploy ended {state.get('status')}: {state.get('reason')}")
                    if i >= warmup:
                        (cli_ms if way == "cli" else http_ms).append(elapsed)
        finally:
            plain.close()
    cli, direct = summary(cli_ms), summary(http_ms)
    overhead = {key: round(cli[key] - direct[key], 1) for key in ("p50", "p95")}
    return {
        "deploys": deploys,
        "cli_ms": cli,
        "http_ms": direct,
        "overhead_ms": overhead,
        # What the CLI process itself burnt (user + system): unlike the wall-clock figures above,
        # little moved by how busy the machine is, whose 1-minute load is beside it.
        "cli_cpu_ms": summary(cpu_ms[warmup:]),
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "target_ms": TARGET_MS,
        "met": overhead["p50"] < TARGET_MS,
    }


def part(run: Run) -> None:
    """The bench part (`bench.run.PARTS`): a `bench.stack.Run` in, `result["cli_overhead"]` out."""
    deploys = 5 if run.plan.quick else 20
    result = measure(run.stack, deploys=deploys, warmup=1 if run.plan.quick else 2)
    run.result["cli_overhead"] = result
    cli, direct, extra = result["cli_ms"], result["http_ms"], result["overhead_ms"]
    run.clock.say(
        f"cli overhead p50 {extra['p50']} ms, p95 {extra['p95']} ms over n={deploys} deploys each way "
        f"(landfall deploy --wait p50/p95 {cli['p50']}/{cli['p95']} ms, the same deploys over plain HTTP "
        f"{direct['p50']}/{direct['p95']} ms; target p50 < {TARGET_MS:g} ms: "
        f"{'met' if result['met'] else 'MISSED'}; its CPU p50 {result['cli_cpu_ms']['p50']} ms, "
        f"load {result['load_1m'][0]} -> {result['load_1m'][1]})"
    )


def main() -> int:
    from bench.stack import Clock, start_stack

    clock = Clock()
    root = Path(tempfile.mkdtemp(prefix="landfall-cli-bench-"))
    stack = start_stack(root / "stack", clock, tags=())
    try:
        clock.say("measuring landfall deploy --wait against plain HTTP")
        result = measure(stack, deploys=int(sys.argv[1]) if len(sys.argv) > 1 else 20)
    finally:
        stack.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
