"""What `--wait` does for `deploy`, `promote`, `status` and `run`: which endpoint to ask, the
spinner, and the verdict (the last line on standard output, or the final JSON document).

wait.py holds the loop itself (deadlines, retries, backoff) and knows no command; this module
ties it to a `Run`. The commands import it only when `--wait` is given.

Subtle:
- With a CI token the gateway's long-poll is asked (`?wait=N`, the HTTP timeout a little longer
  than N); other tokens poll `GET /v1/deployments/{id}`.
- An execution has no endpoint of its own: its state is read from the component's list of
  executions in its environment; until the new one shows up there, the accepted answer stands.
- The spinner runs only when standard error is a terminal: in CI's log there are only lines.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from libs.cli.context import Run
from libs.cli.errors import FAILED
from libs.cli.output import image_with_digest, stamp
from libs.cli.wait import DEPLOYMENT_FINAL, EXECUTION_FINAL, Followed, follow


def follow_deployment(run: Run, deployment_id: str, timeout: float) -> Followed:
    api = run.api
    if api.ci:
        path = f"/v1/webhooks/deployments/{deployment_id}"

        def poll(wait: int) -> dict[str, Any]:
            response = api.send("GET", path, params={"wait": wait}, timeout=wait + 15)
            result: dict[str, Any] = api.decode(response)
            return result

    else:

        def poll(wait: int) -> dict[str, Any]:
            response = api.send("GET", f"/v1/deployments/{deployment_id}", timeout=15)
            result: dict[str, Any] = api.decode(response)
            return result

    on_change, on_retry = run.output.progress(deployment_id)
    with (
        run.output.err.status(f"waiting for {deployment_id}", spinner="dots")
        if sys.stderr.isatty()  # a person watching: a spinner; in CI's log only the lines
        else contextlib.nullcontext()
    ):
        return follow(
            poll,
            what=f"deployment {deployment_id}",
            timeout=timeout,
            final=DEPLOYMENT_FINAL,
            on_change=on_change,
            on_retry=on_retry,
            long_poll=api.ci,
        )


def finish_deployment(run: Run, followed: Followed) -> None:
    """The last line on standard output (or the JSON document), and exit 1 unless it succeeded."""
    dep = followed.state
    status = str(dep.get("status"))
    if run.output.json:
        run.output.document(dep)
    else:
        where = f"{dep.get('component')}/{dep.get('environment')}"
        line = f"{status}: {image_with_digest(dep)} in {where} ({dep.get('id')})"
        if status != "succeeded":
            line += f" reason: {dep.get('reason') or 'none given'}"
            notes = [str(n) for n in dep.get("notes") or []]
            if notes:
                line += " (" + "; ".join(notes) + ")"
        run.output.line(line)
    if status != "succeeded":
        raise click.exceptions.Exit(FAILED)


def wait_for_deployment(run: Run, deployment_id: str, timeout: float, accepted: str = "accepted") -> None:
    """`accepted` on standard error, every status after it, then the verdict."""
    run.output.note(f"{stamp()}  {deployment_id}  {accepted}")
    finish_deployment(run, follow_deployment(run, deployment_id, timeout))


def wait_for_execution(run: Run, component: str, execution: dict[str, Any], timeout: float) -> None:
    """Follow a run of a manual task until it is final; the verdict, and exit 1 unless it succeeded."""
    execution_id = str(execution["id"])
    api = run.api
    list_path = run.component_path(component) + "/executions"

    def poll(_: int) -> dict[str, Any]:
        response = api.send("GET", list_path, params={"environment": execution["environment"]}, timeout=15)
        items = (api.decode(response) or {}).get("items") or []
        for item in items:
            if item.get("id") == execution_id:
                found: dict[str, Any] = item
                return found
        return execution

    on_change, on_retry = run.output.progress(execution_id)
    run.output.note(f"{stamp()}  {execution_id}  accepted")
    final = follow(
        poll,
        what=f"execution {execution_id}",
        timeout=timeout,
        final=EXECUTION_FINAL,
        on_change=on_change,
        on_retry=on_retry,
        long_poll=False,
    ).state
    if run.output.json:
        run.output.document(final)
    else:
        line = f"{final.get('status')}: execution {execution_id} of {component} in {final.get('environment')}"
        if final.get("status") != "succeeded":
            line += f" reason: {final.get('reason') or 'none given'}"
        run.output.line(line)
    if final.get("status") != "succeeded":
        raise click.exceptions.Exit(FAILED)
