"""`make up` and `make down`: the whole stack in the foreground, for people.

`python -m libs.devstack.stack up|down` (what the Makefile runs) lands here; the
`Stack` class does the work, this module adds what a person at a terminal needs:
one coloured, prefixed log stream, the addresses to use (the front door's
`LANDFALL_URL` first), a curl that deploys, and a supervisor loop that restarts a
child that exits.

Subtle parts:
- The data plane is the current kubeconfig context when its cluster answers on
  TCP within 2 s, otherwise the sandbox; a wrong or stale kubeconfig must never
  keep `make up` from starting.
- Ports come from the state directory when an earlier run saved them, so URLs in
  a shell that sourced `.landfall/local.env` stay true across restarts.
- `make down` asks the supervisor (SIGTERM) to stop everything in order and
  waits for `pids.json` to disappear; only if there is no supervisor left does it
  signal the children one by one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from libs.devstack.stack import LOG_NAMES, Ports, Stack, StackError, random_ports

COLORS = {
    "credentials": 35,
    "orchestrator": 34,
    "webhook_gateway": 32,
    "data_plane_agent": 33,
    "sandbox": 36,
    "front": 37,
}


def reachable_kube_context() -> Path | None:
    """The current kubeconfig, if its cluster answers on TCP; else None (use the sandbox)."""
    path = Path(os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))).expanduser()
    if not path.is_file():
        return None
    try:
        import yaml

        cfg = yaml.safe_load(path.read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg.get("contexts", []) if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg.get("clusters", []) if c["name"] == ctx["cluster"])
        server = urlparse(cluster["server"])
        with socket.create_connection((server.hostname or "", server.port or 443), timeout=2):
            return path
    except Exception:
        return None


def _printer() -> Callable[[str, str], None]:
    lock = threading.Lock()
    tty = sys.stdout.isatty()

    def echo(name: str, line: str) -> None:
        label = LOG_NAMES.get(name, name)
        color = COLORS.get(name, 0)
        prefix = f"\033[{color}m{label:>12}\033[0m |" if tty and color else f"{label:>12} |"
        with lock:
            print(f"{prefix} {line}", flush=True)

    return echo


def _ports_for(root: Path, *, random: bool) -> Ports:
    """The ports of the earlier run in this state directory, else defaults (or free ones)."""
    state_path = root / "state.json"
    saved = json.loads(state_path.read_text()).get("ports") if state_path.exists() else None
    if saved:
        return Ports(**saved)
    return random_ports() if random else Ports()


def up(
    root: Path, *, random: bool = False, replicas: int = 1, nats_nodes: int = 1, nats_tls: bool = True
) -> int:
    echo = _printer()
    kube = reachable_kube_context()
    ports = _ports_for(root, random=random)
    stack = Stack(
        root,
        ports=ports,
        echo=echo,
        kubeconfig=kube,
        log_format="text",
        persist_sandbox=True,
        replicas=replicas,
        nats_nodes=nats_nodes,
        nats_tls=nats_tls,
    )
    stack.state["ports"] = {k: v for k, v in vars(ports).items()}
    stack._save()
    stopping = threading.Event()

    def on_signal(signum: int, _: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start_infra()
        if kube is None:
            stack.start_sandbox()
            echo(
                "landfall",
                "no reachable Kubernetes cluster in your kubeconfig: using the SANDBOX Kubernetes API",
            )
            echo("landfall", "(an emulator with a simulated controller; nothing really runs)")
        else:
            echo("landfall", f"deploying to the current context of {kube}")
        stack.start_services()
        stack.provision()
        stack.start_service("data_plane_agent")
        stack.provision_demo()
        env_path = stack.write_local_env()
        stack.write_pids()
        token = stack.state["demo_ci_token"]
        gw = stack.front_url
        print(
            f"""
Landfall is up. Settings for your shell: source {env_path}

  LANDFALL_URL     {stack.front_url}   (the one address for people and the landfall CLI)
  console          {stack.url("console")}   (the web console: sign in with the org key below)

  webhook-gateway  {", ".join(stack.urls("webhook_gateway"))}
  credentials      {", ".join(stack.urls("credentials"))}
  orchestrator     {", ".join(stack.urls("orchestrator"))}
  {"sandbox k8s API  " + stack.sandbox_url if kube is None else "cluster          " + str(kube)}

  org key          {stack.org_key}
                   LANDFALL_ORG_KEY: owner of org default. Use it every day, and for the CLI:
                   landfall login --url $LANDFALL_URL --token $LANDFALL_ORG_KEY
  admin token      {stack.admin_token}
                   LANDFALL_ADMIN_TOKEN: the platform operator. Only to create orgs (and their
                   first owner key); never hand it to a person or a tool of one org.

Deploy the demo image (tag 1.1 is in the local registry {stack.registry.host}) as CI would:

  curl -sS -X POST {gw}/v1/webhooks/deploy \\
    -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\
    -d '{{"tag": "1.1"}}'

then wait for the rollout with the status_url it returns:

  curl -sS -H 'Authorization: Bearer {token}' '{gw}/v1/webhooks/deployments/<deployment_id>?wait=30'

Ctrl-C stops everything (or run `make down` from another terminal).
""",
            flush=True,
        )
        while not stopping.wait(0.5):
            for name, proc in stack.procs.items():
                if proc.popen and proc.popen.poll() is not None:
                    echo("landfall", f"{name} exited with {proc.popen.returncode}; restarting it")
                    stack.restart_service(name)
                    stack.write_pids()
        return 0
    except StackError as exc:
        echo("landfall", f"error: {exc}")
        return 1
    finally:
        echo("landfall", "stopping …")
        stack.stop()
        echo("landfall", "stopped")


def down(root: Path) -> int:
    pids_path = root / "pids.json"
    if not pids_path.exists():
        print("no running stack found (no .landfall/pids.json)")
        return 0
    pids: dict[str, int] = json.loads(pids_path.read_text())
    supervisor = pids.pop("supervisor", None)
    if supervisor:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGTERM)
            print(f"asked the supervisor (pid {supervisor}) to stop the stack …")
            for _ in range(300):
                if not pids_path.exists():
                    print("stopped")
                    return 0
                time.sleep(0.1)
    for name, pid in pids.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            print(f"stopped {name} (pid {pid})")
    pids_path.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.devstack.stack")  # what the Makefile runs
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", default=".landfall")
    parser.add_argument(
        "--random-ports",
        action="store_true",
        help="free ports, not the defaults (kept for reruns)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("LANDFALL_REPLICAS") or 1),
        help="processes of each HTTP service (the front door spreads them); default $LANDFALL_REPLICAS or 1",
    )
    parser.add_argument(
        "--nats-nodes",
        type=int,
        default=int(os.environ.get("LANDFALL_NATS_NODES") or 1),
        help="nats-servers, more than one as a JetStream cluster; default $LANDFALL_NATS_NODES or 1",
    )
    parser.add_argument(
        "--nats-tls",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("LANDFALL_NATS_TLS", "1") not in ("0", "false", "no"),
        help="NATS over TLS with the stack's own CA (default; LANDFALL_NATS_TLS=0 turns it off)",
    )
    args = parser.parse_args(argv)
    root = Path(args.state_dir).resolve()
    if args.command == "down":
        return down(root)
    return up(
        root,
        random=args.random_ports,
        replicas=max(1, args.replicas),
        nats_nodes=max(1, args.nats_nodes),
        nats_tls=args.nats_tls,
    )


if __name__ == "__main__":
    sys.exit(main())
