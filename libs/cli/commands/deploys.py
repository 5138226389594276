"""`landfall deploy|promote|status|history|run`: what CI and people do most, and what CI waits on.

`deploy` is the command whose start-up every CI job pays (bench/cli_overhead.py): it imports no
more than it uses. Without `--wait` the following machinery (following.py, wait.py) is never
imported; with `--wait` Rich is imported only for the spinner, when standard error is a terminal.

Subtle:
- With a CI token (`lfci_…`) `deploy` takes no COMPONENT (the token names it) and goes through
  the webhook (`POST /v1/webhooks/deploy`) with an `Idempotency-Key`, which is why that POST may
  be retried on a dropped connection or 429/502/503/504: a retry returns the first request's
  deployment, never a second one. Other tokens go to the component's deployments endpoint.
- `--digest` with a management token needs the component's repository: the digest is pinned
  onto it (`host/path@sha256:…`), since that endpoint takes a tag or a full reference.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from libs.cli.context import DEFAULT_TIMEOUT, Run, given, runs
from libs.cli.errors import usage
from libs.cli.output import image_with_digest, pick, when

if TYPE_CHECKING:
    from libs.cli.client import Api


def wait_options(what: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`--wait` and `--timeout`, the same on every command that can follow what it started."""

    def add(func: Callable[..., None]) -> Callable[..., None]:
        func = click.option(
            "--timeout",
            type=float,
            metavar="SECONDS",
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="how long --wait waits",
        )(func)
        return click.option("--wait", is_flag=True, help=f"follow {what} until it is final")(func)

    return add


def post_retrying(
    api: Api,
    path: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str],
    timeout: float,
    on_retry: Callable[[str], None],
) -> Any:
    """POST with an Idempotency-Key, retried on connection errors and 429/502/503/504 until `timeout`:
    the key makes a retry return the first request's deployment, never a second one."""
    from libs.cli.client import TRANSIENT_ERRORS, TRANSIENT_STATUSES, ApiError, unreachable

    deadline = time.monotonic() + min(timeout, 120)
    backoff = 0.2
    while True:
        try:
            return api.decode(api.send("POST", path, body=body, headers=headers))
        except ApiError as exc:
            if exc.status not in TRANSIENT_STATUSES or time.monotonic() + backoff > deadline:
                raise
            on_retry(f"HTTP {exc.status}; retrying in {backoff:.1f} s")
        except TRANSIENT_ERRORS as exc:
            if time.monotonic() + backoff > deadline:
                raise unreachable(api.url, exc) from None
            on_retry(f"{type(exc).__name__}; retrying in {backoff:.1f} s")
        time.sleep(backoff)
        backoff = min(backoff * 2, 2.0)


def repository_of(image: str) -> str:
    """host/path of a reference, without its tag or digest."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def _deployment_answer(run: Run, dep: dict[str, Any]) -> None:
    run.output.answer(
        dep,
        "deployment=id status reason component environment image digest source notes"
        " created=when(created_at) updated=when(updated_at)",
    )


@click.command()
@click.argument("component", required=False, help="not with a CI token: the token names its component")
@click.option("--tag", metavar="TAG", help="a tag of the component's repository")
@click.option("--image", metavar="REF", help="a full reference")
@click.option("--digest", metavar="DIGEST", help="sha256:… of the component's repository")
@click.option("--environment", metavar="ENV", help="default: the first environment")
@wait_options("the rollout")
@click.option(
    "--idempotency-key",
    metavar="KEY",
    envvar="LANDFALL_IDEMPOTENCY_KEY",
    show_envvar=True,
    help="CI token: the same key on a retried job returns the same deployment (default: random)",
)
@runs
def deploy(
    run: Run,
    component: str | None,
    tag: str | None,
    image: str | None,
    digest: str | None,
    environment: str | None,
    wait: bool,
    timeout: float,
    idempotency_key: str | None,
) -> None:
    """Deploy an image by tag, reference or digest; with --wait, until the rollout is final."""
    given = [(k, v) for k, v in (("tag", tag), ("image", image), ("digest", digest)) if v]
    if len(given) != 1:
        raise usage("error: give exactly one of --tag, --image or --digest")
    if timeout <= 0:
        raise usage("error: --timeout must be more than 0 seconds")
    api = run.api
    if api.ci:
        if component:
            raise usage(
                f"error: with a CI token, deploy takes no COMPONENT (the token names it); drop {component!r}"
            )
        if environment:
            raise usage(
                "error: with a CI token, deploy goes to the component's first environment; drop --environment"
            )
        key = idempotency_key or "landfall-cli-" + os.urandom(16).hex()
        _, on_retry = run.output.progress("deploy")
        accepted = post_retrying(
            api,
            "/v1/webhooks/deploy",
            dict(given),
            headers={"Idempotency-Key": key},
            timeout=timeout,
            on_retry=on_retry,
        )
        deployment_id = str(accepted["deployment_id"])
        answer: dict[str, Any] = accepted
    else:
        if not component:
            raise usage("error: deploy needs COMPONENT (only a CI token names its own)")
        body: dict[str, Any] = {}
        if environment:
            body["environment"] = environment
        if tag:
            body["tag"] = tag
        elif image:
            body["image"] = image
        else:
            comp = api.call("GET", run.component_path(component))
            body["image"] = f"{repository_of(str(comp['image']))}@{digest}"
        answer = api.call("POST", run.component_path(component) + "/deployments", body=body)
        deployment_id = str(answer["id"])
    if wait:
        from libs.cli.following import wait_for_deployment

        wait_for_deployment(run, deployment_id, timeout)
    else:
        run.output.answer(
            answer,
            [("deployment", deployment_id), *pick(answer, "status component environment image")],
            notes=[f"follow it: landfall status {deployment_id} --wait"],
        )


@click.command()
@click.argument("component")
@click.option("--from", "source", metavar="ENV", required=True)
@click.option("--to", "target", metavar="ENV", required=True)
@wait_options("the rollout")
@runs
def promote(run: Run, component: str, source: str, target: str, wait: bool, timeout: float) -> None:
    """Deploy the image running in --from (same digest) to --to."""
    run.no_ci_token("promote")
    answer = run.api.call(
        "POST", run.component_path(component) + "/promotions", body={"from": source, "to": target}
    )
    if wait:
        from libs.cli.following import wait_for_deployment

        wait_for_deployment(run, str(answer["id"]), timeout, accepted=f"accepted ({source} -> {target})")
    else:
        _deployment_answer(run, answer)


@click.command()
@click.argument("deployment_id", metavar="DEPLOYMENT_ID")
@wait_options("the deployment")
@runs
def status(run: Run, deployment_id: str, wait: bool, timeout: float) -> None:
    """A deployment; with --wait, until it is final (exit 1 when it failed)."""
    if wait:
        from libs.cli.following import finish_deployment, follow_deployment

        finish_deployment(run, follow_deployment(run, deployment_id, timeout))
        return
    path = f"/v1/webhooks/deployments/{deployment_id}" if run.api.ci else f"/v1/deployments/{deployment_id}"
    _deployment_answer(run, run.api.call("GET", path))


@click.command()
@click.argument("component")
@click.option("--environment", metavar="ENV")
@click.option("--limit", type=click.IntRange(1, 500), metavar="N")
@runs
def history(run: Run, component: str, environment: str | None, limit: int | None) -> None:
    """Deployments of a component, newest first (the images you can deploy again)."""
    params = given(environment=environment, limit=limit)
    run.output.listing(
        run.api.call("GET", run.component_path(component) + "/deployments", params=params),
        ("DEPLOYMENT", "ENVIRONMENT", "STATUS", "IMAGE", "SOURCE", "CREATED", "REASON"),
        lambda d: (
            d.get("id"),
            d.get("environment"),
            d.get("status"),
            image_with_digest(d),
            d.get("source"),
            when(d.get("created_at")),
            d.get("reason"),
        ),
        empty=f"no deployments of {component} yet",
    )


@click.command(name="run")
@click.argument("component")
@click.argument("args", nargs=-1, metavar="[-- ARG...]", help="the task's arguments")
@click.option("--environment", metavar="ENV")
@wait_options("the run")
@runs
def run_task(
    run: Run, component: str, args: tuple[str, ...], environment: str | None, wait: bool, timeout: float
) -> None:
    """Run a manual task once, with arguments after `--`."""
    run.no_ci_token("run")
    body = {"args": list(args), **given(environment=environment)}
    execution = run.api.call("POST", run.component_path(component) + "/executions", body=body)
    if wait:
        from libs.cli.following import wait_for_execution

        wait_for_execution(run, component, execution, timeout)
    else:
        run.output.answer(
            execution,
            "execution=id status environment args deployment=deployment_id reason created=when(created_at)",
        )
