"""`python -m libs.devstack.sandbox`: the sandbox as its own process, as `make up` runs it.

With `--state FILE` the objects survive restarts, a SIGKILL included: what a write changed is
appended to `FILE`'s `.changes.jsonl` before it is answered, as etcd would, the snapshot `FILE`
rewritten (atomically) every so many changes (journal.py), and the write log
(`GET /_sandbox/writes`) kept beside them in `FILE`'s `.writes.jsonl` (journal.py); what the
controllers change on their own (status) is flushed at the next write, at most every
`--save-seconds` and at exit. `--kubeconfig` writes a kubeconfig for the printed URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable
from pathlib import Path

from libs.devstack.sandbox.front import SandboxCluster
from libs.devstack.sandbox.kubeconfig import write_kubeconfig


async def _serve_forever(args: argparse.Namespace) -> None:
    cluster = SandboxCluster(
        host=args.host,
        port=args.port,
        controller=not args.no_controller,
        require_namespaces=not args.lenient_namespaces,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.state:
        restored = cluster.open_durable(args.state)
        if restored:
            print(f"sandbox: {restored} objects restored from {args.state}", flush=True)
    async with cluster:
        if args.kubeconfig:
            write_kubeconfig(args.kubeconfig, cluster.url, args.namespace)
        print(f"sandbox Kubernetes API listening on {cluster.url}", flush=True)
        saved = cluster.resource_version
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.save_seconds)
            # Writes are saved as they are answered; this catches the controllers' status changes.
            if args.state and cluster.resource_version != saved:
                cluster.flush_durable()
                saved = cluster.resource_version
        if args.state:
            cluster.save_state(args.state)  # a clean stop leaves one snapshot and no changes
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m libs.devstack.sandbox",
        description="An in-memory Kubernetes API with simulated controllers, for machines without a cluster.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the printed URL)")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig pointing at the sandbox here")
    parser.add_argument("--namespace", help="the kubeconfig context's namespace")
    parser.add_argument("--no-controller", action="store_true", help="do not simulate controllers")
    parser.add_argument(
        "--lenient-namespaces",
        action="store_true",
        help="allow objects in namespaces that were never created",
    )
    parser.add_argument(
        "--state", type=Path, help="keep the objects in this JSON file: loaded at start, saved while running"
    )
    parser.add_argument("--save-seconds", type=float, default=2.0, help="how often changes are saved")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s sandbox %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        asyncio.run(_serve_forever(args))
    except OSError as exc:
        raise SystemExit(f"sandbox: cannot listen on {args.host}:{args.port}: {exc}") from exc


if __name__ == "__main__":
    main()
