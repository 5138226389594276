"""What a run leaves behind to judge, collected once nothing is in flight any more.

Each component's history from the orchestrator (polled until no deployment is pending, dispatched
or progressing, or the run's patience ends), the sandbox Kubernetes API's write log for the run's
namespace, each component's live Deployment and, for the components whose config changed, the
Secret `<component>-env`. `reconcile.judge` decides from these alone (the definitions are in its
module's docstring), so the unit tests can plant any of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench.client import Admin
from chaos.config_changes import Change
from chaos.load import Webhook
from chaos.provision import ORG, Target
from chaos.reconcile import TERMINAL, Reconciliation, judge
from libs.contracts.naming import namespace_for
from libs.devstack.stack import Stack


async def history(admin: Admin, project: str, component: str) -> list[dict[str, Any]]:
    """The component's deployments, newest (highest seq) first."""
    body = await admin.call(
        "orchestrator",
        "GET",
        f"/v1/orgs/{ORG}/projects/{project}/components/{component}/deployments?limit=200",
    )
    items: list[dict[str, Any]] = body["items"]
    return items


async def wait_until_settled(
    admin: Admin, project: str, targets: list[Target], *, timeout: float, say: Any = print
) -> dict[str, list[dict[str, Any]]]:
    """Poll every component's history until no deployment is in flight (or `timeout`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        histories = dict(
            zip(
                [t.name for t in targets],
                await asyncio.gather(*(history(admin, project, t.name) for t in targets)),
                strict=True,
            )
        )
        open_ = sum(1 for items in histories.values() for d in items if d["status"] not in TERMINAL)
        if open_ == 0 or loop.time() > deadline:
            if open_:
                say(f"{open_} deployments still in flight after {timeout:g} s")
            return histories
        say(f"waiting for {open_} deployments to finish")
        await asyncio.sleep(5)


async def sandbox_get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=60)) as resp:
        return resp.status, await resp.json(content_type=None)


async def reconcile(
    stack: Stack,
    *,
    project: str,
    targets: list[Target],
    hooks: list[Webhook],
    timeout: float,
    seconds: dict[str, float],
    say: Any = print,
    environment: str = "development",
    changes: Sequence[Change] = (),
) -> Reconciliation:
    """The end of a run: wait until nothing is in flight (timed as `seconds["settle"]`), collect the
    data plane's evidence (its write log, each component's live Deployment), then `judge`."""
    began = time.monotonic()
    sandbox_url = stack.sandbox_url
    namespace = namespace_for(ORG, project, environment)
    async with aiohttp.ClientSession() as session:
        admin = Admin.for_stack(session, stack, patience=300)
        histories = await wait_until_settled(admin, project, targets, timeout=timeout, say=say)
        seconds["settle"] = time.monotonic() - began
        _, every_write = await sandbox_get(session, sandbox_url + "/_sandbox/writes")
        # This run's namespace only: an earlier run on the same stack wrote its own.
        writes = [w for w in every_write if w.get("namespace") == namespace]
        answers = await asyncio.gather(
            *(
                sandbox_get(
                    session, f"{sandbox_url}/apis/apps/v1/namespaces/{namespace}/deployments/{t.name}"
                )
                for t in targets
            )
        )
        secrets = await asyncio.gather(
            *(
                sandbox_get(session, f"{sandbox_url}/api/v1/namespaces/{namespace}/secrets/{c.component}-env")
                for c in changes
            )
        )
    live = {t.name: answer for t, answer in zip(targets, answers, strict=True)}
    return judge(
        targets=targets,
        hooks=hooks,
        histories=histories,
        writes=writes,
        live=live,
        changes=changes,
        env_secrets={c.component: answer for c, answer in zip(changes, secrets, strict=True)},
    )
