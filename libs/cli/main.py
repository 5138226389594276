"""The `landfall` command line (CLI.md): the commands, over the public HTTP API only.

Global options (`--url`, `--token`, `--token-stdin`, `--org`, `--project`, `--profile`,
`-o/--output`) may stand anywhere before `--`: `main` moves them in front of the command, so
`landfall deploy hello --tag 1.1 -o json` and `landfall -o json deploy hello --tag 1.1` are one.
"""

from __future__ import annotations

import functools
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import httpx
import typer

from libs.cli import config as cfg
from libs.cli.client import TRANSIENT_ERRORS, TRANSIENT_STATUSES, Api, ApiError, endpoint_missing, unreachable
from libs.cli.errors import FAILED, INVALID, NOT_FOUND, OK, UNAVAILABLE, CliError, usage
from libs.cli.output import Output, image_with_digest, when
from libs.cli.wait import DEPLOYMENT_FINAL, EXECUTION_FINAL, Followed, follow

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT = 1800.0
GLOBAL_VALUE_OPTIONS = frozenset({"--url", "--token", "--org", "--project", "--profile", "--output", "-o"})
GLOBAL_FLAGS = frozenset({"--token-stdin"})

app = typer.Typer(
    name="landfall",
    help="Landfall from the command line: registries, components, deploys, promotions, runs, tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
registries_app = typer.Typer(help="Image registries of the org.", no_args_is_help=True)
components_app = typer.Typer(help="Components of the project.", no_args_is_help=True)
tokens_app = typer.Typer(help="CI tokens of a component (webhook only).", no_args_is_help=True)
keys_app = typer.Typer(help="Org API keys.", no_args_is_help=True)
config_app = typer.Typer(help="Per-environment configuration of a component.", no_args_is_help=True)
dataplanes_app = typer.Typer(help="Data planes (clusters) of the org.", no_args_is_help=True)
app.add_typer(registries_app, name="registries")
app.add_typer(components_app, name="components")
app.add_typer(tokens_app, name="tokens")
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")
app.add_typer(dataplanes_app, name="dataplanes")

OutputFormat = Literal["table", "json"]


# --- who and where ------------------------------------------------------------------------------


@dataclass
class Run:
    """What every command needs: the resolved settings, the output, a client made on first use."""

    flags: dict[str, Any]
    output: Output
    _settings: cfg.Settings | None = None
    _api: Api | None = None

    @property
    def settings(self) -> cfg.Settings:
        if self._settings is None:
            flags = dict(self.flags)
            if flags.pop("token_stdin", False):
                flags["token"] = read_stdin_secret("--token-stdin")
            self._settings = cfg.resolve(flags)
        return self._settings

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.settings.require_url(), self.settings.token)
        return self._api

    @property
    def org(self) -> str:
        return self.settings.org

    @property
    def project(self) -> str:
        return self.settings.project

    def component_path(self, component: str) -> str:
        return f"/v1/orgs/{self.org}/projects/{self.project}/components/{component}"

    def no_ci_token(self, command: str) -> None:
        if self.api.ci:
            raise CliError(
                3,
                f"error: a CI token (lfci_…) can only deploy and read deployments, not `{command}`\n"
                "  next: use an org API key or the admin token (--token, LANDFALL_TOKEN or `landfall login`)",
            )


def run_of(ctx: typer.Context) -> Run:
    obj = ctx.find_root().obj
    assert isinstance(obj, Run)
    return obj


def read_stdin_secret(flag: str) -> str:
    if sys.stdin.isatty():
        sys.stderr.write(f"landfall: reading {flag} from standard input (end with Ctrl-D) …\n")
    value = sys.stdin.read()
    value = value[:-1] if value.endswith("\n") else value
    value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise usage(f"error: {flag}: standard input was empty")
    return value


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """A CliError becomes its message on standard error and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CliError as exc:
            sys.stdout.flush()
            sys.stderr.write(f"landfall: {exc.message}\n")
            sys.stderr.flush()
            raise typer.Exit(exc.code) from None

    return wrapper


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Landfall's one address [env: LANDFALL_URL]", show_default=False),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="an org API key, the admin token, or a CI token (lfci_…) [env: LANDFALL_TOKEN]",
            show_default=False,
        ),
    ] = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="read the token from standard input")
    ] = False,
    org: Annotated[str | None, typer.Option("--org", help="[env: LANDFALL_ORG; default: default]")] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="[env: LANDFALL_PROJECT; default: default]")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="a profile saved by `landfall login` [env: LANDFALL_PROFILE]"),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table for people, or the API's JSON")
    ] = "table",
) -> None:
    """Landfall from the command line. Flags beat the environment, which beats the saved profile."""
    if token and token_stdin:
        raise typer.BadParameter("give --token or --token-stdin, not both", param_hint="--token-stdin")
    ctx.obj = Run(
        flags={
            "url": url,
            "token": token,
            "token_stdin": token_stdin,
            "org": org,
            "project": project,
            "profile": profile,
        },
        output=Output(output),
    )


# --- login ---------------------------------------------------------------------------------------


@app.command()
@handles_errors
def login(
    ctx: typer.Context,
    profile_name: Annotated[
        str | None, typer.Option("--profile-name", hidden=True, help="same as the global --profile")
    ] = None,
) -> None:
    """Save --url, --token (or --token-stdin), --org and --project in a profile (0600 file)."""
    run = run_of(ctx)
    flags = dict(run.flags)
    if flags.pop("token_stdin", False):
        flags["token"] = read_stdin_secret("--token-stdin")
    name = profile_name or flags.get("profile") or cfg.DEFAULT_PROFILE
    if not flags.get("url"):
        raise usage("error: login needs --url URL (Landfall's one address)")
    if not flags.get("token"):
        raise usage("error: login needs --token TOKEN or --token-stdin")
    path = cfg.config_path()
    cfg.save_profile(
        path,
        name,
        {k: flags.get(k) for k in cfg.FIELDS},
        make_current=True,
    )
    if run.output.json:
        run.output.document({"profile": name, "path": str(path), "url": flags["url"]})
    else:
        run.output.line(f"saved profile {name} ({flags['url']}) in {path}")


# --- registries ----------------------------------------------------------------------------------

RegistryType = Literal["anonymous", "basic", "docker-config", "vendor"]
Vendor = Literal["azure", "gcp", "aws"]


def _registries(run: Run) -> list[dict[str, Any]]:
    answer = run.api.call("GET", f"/v1/orgs/{run.org}/registries")
    return list(answer.get("items") or [])


def resolve_registry(run: Run, name_or_id: str) -> dict[str, Any]:
    """A registry by id, or by display name (exactly one must have it)."""
    items = _registries(run)
    by_id = [r for r in items if r.get("id") == name_or_id]
    if by_id:
        return by_id[0]
    named = [r for r in items if r.get("display_name") == name_or_id]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(str(r["id"]) for r in named)
        raise CliError(
            INVALID, f"error: {len(named)} registries are named {name_or_id!r} ({ids}); give the id"
        )
    raise CliError(
        NOT_FOUND,
        f"error: no registry {name_or_id!r} in org {run.org}\n  next: `landfall registries list`",
    )


@registries_app.command("list")
@handles_errors
def registries_list(ctx: typer.Context) -> None:
    """The org's registries."""
    run = run_of(ctx)
    answer = run.api.call("GET", f"/v1/orgs/{run.org}/registries")
    if run.output.json:
        run.output.document(answer)
        return
    run.output.table(
        ("ID", "NAME", "TYPE", "HOST", "USERNAME", "WARNINGS"),
        [
            (
                r.get("id"),
                r.get("display_name"),
                r.get("auth_type"),
                r.get("host"),
                r.get("username"),
                r.get("warnings"),
            )
            for r in answer.get("items") or []
        ],
        empty="no registries yet: `landfall registries add NAME --type …`",
    )


@registries_app.command("add")
@handles_errors
def registries_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="display name")],
    kind: Annotated[RegistryType, typer.Option("--type", help="how Landfall and the cluster authenticate")],
    host: Annotated[str | None, typer.Option("--host", help="e.g. ghcr.io (not for docker-config)")] = None,
    username: Annotated[str | None, typer.Option("--username", help="basic only")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="basic: read the password from standard input")
    ] = False,
    config_file: Annotated[
        Path | None,
        typer.Option("--config-file", help="docker-config: a Docker config JSON file ('-': standard input)"),
    ] = None,
    vendor: Annotated[Vendor | None, typer.Option("--vendor", help="vendor only")] = None,
) -> None:
    """Register a registry. Secrets come from standard input or a file, never from the command line."""
    run = run_of(ctx)
    run.no_ci_token("registries add")
    if run.flags.get("token_stdin") and (password_stdin or str(config_file) == "-"):
        raise usage("error: standard input can hold the token or the registry secret, not both")
    auth: dict[str, Any] = {"type": kind}
    if kind == "docker-config":
        if config_file is None:
            raise usage("error: --type docker-config needs --config-file FILE (or - for standard input)")
        if str(config_file) == "-":
            auth["config"] = read_stdin_secret("--config-file -")
        else:
            try:
                auth["config"] = config_file.read_text()
            except OSError as exc:
                raise usage(f"error: cannot read --config-file {config_file}: {exc.strerror}") from None
    else:
        if not host:
            raise usage(f"error: --type {kind} needs --host HOST")
        auth["host"] = host
    if kind == "basic":
        if not username:
            raise usage("error: --type basic needs --username USER")
        if not password_stdin:
            raise usage(
                "error: --type basic needs --password-stdin (the password is read from standard input)"
            )
        auth["username"] = username
        auth["password"] = read_stdin_secret("--password-stdin")
    elif username or password_stdin:
        raise usage(f"error: --username and --password-stdin are for --type basic, not {kind}")
    if kind == "vendor":
        if not vendor:
            raise usage("error: --type vendor needs --vendor azure|gcp|aws")
        auth["vendor"] = vendor
    elif vendor:
        raise usage("error: --vendor is for --type vendor")
    answer = run.api.call("POST", f"/v1/orgs/{run.org}/registries", body={"display_name": name, "auth": auth})
    if run.output.json:
        run.output.document(answer)
        return
    _registry_fields(run, answer)
    for warning in answer.get("warnings") or []:
        run.output.note(f"warning: {warning}")


def _registry_fields(run: Run, reg: dict[str, Any]) -> None:
    run.output.fields(
        [
            ("id", reg.get("id")),
            ("name", reg.get("display_name")),
            ("type", reg.get("auth_type")),
            ("host", reg.get("host")),
            ("username", reg.get("username")),
            ("vendor", reg.get("vendor")),
            ("created", when(reg.get("created_at"))),
        ]
    )


@registries_app.command("test")
@handles_errors
def registries_test(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(metavar="NAME|ID")],
    repository: Annotated[str | None, typer.Option("--repository", help="e.g. library/nginx")] = None,
) -> None:
    """Make a real call to the registry with its stored credentials (exit 1 when it says no)."""
    run = run_of(ctx)
    reg = resolve_registry(run, registry)
    body = {"repository": repository} if repository else {}
    answer = run.api.call("POST", f"/v1/orgs/{run.org}/registries/{reg['id']}/test", body=body)
    if run.output.json:
        run.output.document(answer)
    else:
        verdict = "ok" if answer.get("ok") else "FAILED"
        run.output.line(
            f"{verdict}: {reg.get('display_name')} ({reg.get('host')}): {answer.get('detail', '')}"
        )
    if not answer.get("ok"):
        raise typer.Exit(FAILED)


@registries_app.command("delete")
@handles_errors
def registries_delete(
    ctx: typer.Context, registry: Annotated[str, typer.Argument(metavar="NAME|ID")]
) -> None:
    """Delete a registry (refused while a component uses it)."""
    run = run_of(ctx)
    reg = resolve_registry(run, registry)
    run.api.call("DELETE", f"/v1/orgs/{run.org}/registries/{reg['id']}")
    if run.output.json:
        run.output.document({"id": reg["id"], "deleted": True})
    else:
        run.output.line(f"deleted registry {reg.get('display_name')} ({reg['id']})")


# --- components ----------------------------------------------------------------------------------

ComponentType = Literal["service", "web-application", "scheduled-task", "manual-task"]


def _running(component: dict[str, Any]) -> str:
    envs = component.get("environments") or {}
    return ", ".join(
        f"{env}={image_with_digest(running)} ({running.get('status')})" for env, running in envs.items()
    )


@components_app.command("list")
@handles_errors
def components_list(ctx: typer.Context) -> None:
    """The project's components and what runs where."""
    run = run_of(ctx)
    answer = run.api.call("GET", f"/v1/orgs/{run.org}/projects/{run.project}/components")
    if run.output.json:
        run.output.document(answer)
        return
    run.output.table(
        ("NAME", "TYPE", "IMAGE", "RUNNING"),
        [
            (c.get("name"), c.get("type"), c.get("image"), _running(c) or "-")
            for c in answer.get("items") or []
        ],
        empty="no components yet: `landfall components create NAME …`",
    )


def parse_pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise usage(f"error: {flag} takes NAME=VALUE (got something without '=' for {name or '?'})")
        pairs[name] = value
    return pairs


@components_app.command("create")
@handles_errors
def components_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    kind: Annotated[ComponentType, typer.Option("--type")],
    registry: Annotated[str, typer.Option("--registry", metavar="NAME|ID")],
    image: Annotated[
        str, typer.Option("--image", metavar="REF", help="full reference on the registry's host")
    ],
    port: Annotated[int | None, typer.Option("--port")] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", metavar="CRON")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", metavar="TZ")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", metavar="NAME=VALUE")] = None,
) -> None:
    """Create a component on a registry."""
    run = run_of(ctx)
    run.no_ci_token("components create")
    reg = resolve_registry(run, registry)
    body: dict[str, Any] = {"name": name, "type": kind, "registry_id": reg["id"], "image": image}
    for key, value in (("port", port), ("schedule", schedule), ("timezone", timezone)):
        if value is not None:
            body[key] = value
    if env:
        body["env"] = parse_pairs(env, "--env")
    answer = run.api.call("POST", f"/v1/orgs/{run.org}/projects/{run.project}/components", body=body)
    if run.output.json:
        run.output.document(answer)
    else:
        _component_fields(run, answer)


def _component_fields(run: Run, comp: dict[str, Any]) -> None:
    run.output.fields(
        [
            ("name", comp.get("name")),
            ("type", comp.get("type")),
            ("image", comp.get("image")),
            ("registry", comp.get("registry_id")),
            ("port", comp.get("port")),
            ("schedule", comp.get("schedule")),
            ("timezone", comp.get("timezone")),
            ("env", comp.get("env")),
            ("created", when(comp.get("created_at"))),
        ]
    )


@components_app.command("show")
@handles_errors
def components_show(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """A component, with the image running in each environment."""
    run = run_of(ctx)
    comp = run.api.call("GET", run.component_path(name))
    if run.output.json:
        run.output.document(comp)
        return
    _component_fields(run, comp)
    envs = comp.get("environments") or {}
    if envs:
        run.output.line("")
        run.output.table(
            ("ENVIRONMENT", "IMAGE", "STATUS", "DEPLOYMENT"),
            [(env, image_with_digest(r), r.get("status"), r.get("deployment_id")) for env, r in envs.items()],
        )


@components_app.command("delete")
@handles_errors
def components_delete(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Delete a component: what it runs is removed from every environment."""
    run = run_of(ctx)
    run.no_ci_token("components delete")
    run.api.call("DELETE", run.component_path(name))
    if run.output.json:
        run.output.document({"name": name, "deleted": True})
    else:
        run.output.line(f"deleted component {name}")


# --- deploy, promote, status, history, run ----------------------------------------------------


def _stamp(moment: float | None = None) -> str:
    now = datetime.fromtimestamp(time.time() if moment is None else moment)
    return now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}"


def _progress(run: Run, what: str) -> tuple[Callable[[str, dict[str, Any]], None], Callable[[str], None]]:
    def on_change(status: str, state: dict[str, Any]) -> None:
        run.output.note(f"{_stamp()}  {what}  {status}")

    def on_retry(message: str) -> None:
        run.output.note(f"{_stamp()}  {what}  {message}")

    return on_change, on_retry


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
        raise typer.Exit(FAILED)


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

    on_change, on_retry = _progress(run, deployment_id)
    with (
        run.output.err.status(f"waiting for {deployment_id}", spinner="dots")
        if sys.stderr.isatty()  # a person watching: a spinner; in CI's log only the lines
        else _null()
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


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


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


def _repository(image: str) -> str:
    """host/path of a reference, without its tag or digest."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


@app.command()
@handles_errors
def deploy(
    ctx: typer.Context,
    component: Annotated[
        str | None, typer.Argument(help="not with a CI token: the token names its component")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="a tag of the component's repository")] = None,
    image: Annotated[str | None, typer.Option("--image", metavar="REF", help="a full reference")] = None,
    digest: Annotated[
        str | None, typer.Option("--digest", help="sha256:… of the component's repository")
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", metavar="ENV", help="default: the first environment")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the rollout until it is final")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="how long --wait waits")
    ] = DEFAULT_TIMEOUT,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            envvar="LANDFALL_IDEMPOTENCY_KEY",
            help="CI token: the same key on a retried job returns the same deployment (default: random)",
        ),
    ] = None,
) -> None:
    """Deploy an image by tag, reference or digest; with --wait, until the rollout is final."""
    run = run_of(ctx)
    given = [(k, v) for k, v in (("tag", tag), ("image", image), ("digest", digest)) if v]
    if len(given) != 1:
        raise usage("error: give exactly one of --tag, --image or --digest")
    if timeout <= 0:
        raise usage("error: --timeout must be more than 0 seconds")
    api = run.api
    _, on_retry = _progress(run, "deploy")
    if api.ci:
        if component:
            raise usage(
                f"error: with a CI token, deploy takes no COMPONENT (the token names it); drop {component!r}"
            )
        if environment:
            raise usage(
                "error: with a CI token, deploy goes to the component's first environment; drop --environment"
            )
        key = idempotency_key or "landfall-cli-" + secrets.token_hex(16)
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
            body["image"] = f"{_repository(str(comp['image']))}@{digest}"
        answer = api.call("POST", run.component_path(component) + "/deployments", body=body)
        deployment_id = str(answer["id"])
    if not wait:
        if run.output.json:
            run.output.document(answer)
        else:
            run.output.fields(
                [
                    ("deployment", deployment_id),
                    ("status", answer.get("status")),
                    ("component", answer.get("component")),
                    ("environment", answer.get("environment")),
                    ("image", answer.get("image")),
                ]
            )
            run.output.note(f"follow it: landfall status {deployment_id} --wait")
        return
    run.output.note(f"{_stamp()}  {deployment_id}  accepted")
    finish_deployment(run, follow_deployment(run, deployment_id, timeout))


@app.command()
@handles_errors
def promote(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument()],
    source: Annotated[str, typer.Option("--from", metavar="ENV")],
    target: Annotated[str, typer.Option("--to", metavar="ENV")],
    wait: Annotated[bool, typer.Option("--wait")] = False,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS")] = DEFAULT_TIMEOUT,
) -> None:
    """Deploy the image running in --from (same digest) to --to."""
    run = run_of(ctx)
    run.no_ci_token("promote")
    answer = run.api.call(
        "POST", run.component_path(component) + "/promotions", body={"from": source, "to": target}
    )
    if not wait:
        if run.output.json:
            run.output.document(answer)
        else:
            _deployment_fields(run, answer)
        return
    run.output.note(f"{_stamp()}  {answer['id']}  accepted ({source} -> {target})")
    finish_deployment(run, follow_deployment(run, str(answer["id"]), timeout))


def _deployment_fields(run: Run, dep: dict[str, Any]) -> None:
    run.output.fields(
        [
            ("deployment", dep.get("id")),
            ("status", dep.get("status")),
            ("reason", dep.get("reason")),
            ("component", dep.get("component")),
            ("environment", dep.get("environment")),
            ("image", dep.get("image")),
            ("digest", dep.get("digest")),
            ("source", dep.get("source")),
            ("notes", dep.get("notes")),
            ("created", when(dep.get("created_at"))),
            ("updated", when(dep.get("updated_at"))),
        ]
    )


@app.command()
@handles_errors
def status(
    ctx: typer.Context,
    deployment_id: Annotated[str, typer.Argument(metavar="DEPLOYMENT_ID")],
    wait: Annotated[bool, typer.Option("--wait")] = False,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS")] = DEFAULT_TIMEOUT,
) -> None:
    """A deployment; with --wait, until it is final (exit 1 when it failed)."""
    run = run_of(ctx)
    if wait:
        finish_deployment(run, follow_deployment(run, deployment_id, timeout))
        return
    path = f"/v1/webhooks/deployments/{deployment_id}" if run.api.ci else f"/v1/deployments/{deployment_id}"
    dep = run.api.call("GET", path)
    if run.output.json:
        run.output.document(dep)
    else:
        _deployment_fields(run, dep)


@app.command()
@handles_errors
def history(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument()],
    environment: Annotated[str | None, typer.Option("--environment", metavar="ENV")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, max=500)] = None,
) -> None:
    """Deployments of a component, newest first (the images you can deploy again)."""
    run = run_of(ctx)
    params: dict[str, Any] = {}
    if environment:
        params["environment"] = environment
    if limit:
        params["limit"] = limit
    answer = run.api.call("GET", run.component_path(component) + "/deployments", params=params)
    if run.output.json:
        run.output.document(answer)
        return
    run.output.table(
        ("DEPLOYMENT", "ENVIRONMENT", "STATUS", "IMAGE", "SOURCE", "CREATED", "REASON"),
        [
            (
                d.get("id"),
                d.get("environment"),
                d.get("status"),
                image_with_digest(d),
                d.get("source"),
                when(d.get("created_at")),
                d.get("reason"),
            )
            for d in answer.get("items") or []
        ],
        empty=f"no deployments of {component} yet",
    )


@app.command(name="run")
@handles_errors
def run_task(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument()],
    args: Annotated[
        list[str] | None, typer.Argument(metavar="[-- ARG...]", help="the task's arguments")
    ] = None,
    environment: Annotated[str | None, typer.Option("--environment", metavar="ENV")] = None,
    wait: Annotated[bool, typer.Option("--wait")] = False,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS")] = DEFAULT_TIMEOUT,
) -> None:
    """Run a manual task once, with arguments after `--`."""
    run = run_of(ctx)
    run.no_ci_token("run")
    body: dict[str, Any] = {"args": list(args or [])}
    if environment:
        body["environment"] = environment
    execution = run.api.call("POST", run.component_path(component) + "/executions", body=body)
    if not wait:
        if run.output.json:
            run.output.document(execution)
        else:
            _execution_fields(run, execution)
        return
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
        latest: dict[str, Any] = execution
        return latest

    on_change, on_retry = _progress(run, execution_id)
    run.output.note(f"{_stamp()}  {execution_id}  accepted")
    followed = follow(
        poll,
        what=f"execution {execution_id}",
        timeout=timeout,
        final=EXECUTION_FINAL,
        on_change=on_change,
        on_retry=on_retry,
        long_poll=False,
    )
    final = followed.state
    if run.output.json:
        run.output.document(final)
    else:
        line = f"{final.get('status')}: execution {execution_id} of {component} in {final.get('environment')}"
        if final.get("status") != "succeeded":
            line += f" reason: {final.get('reason') or 'none given'}"
        run.output.line(line)
    if final.get("status") != "succeeded":
        raise typer.Exit(FAILED)


def _execution_fields(run: Run, execution: dict[str, Any]) -> None:
    run.output.fields(
        [
            ("execution", execution.get("id")),
            ("status", execution.get("status")),
            ("environment", execution.get("environment")),
            ("args", execution.get("args")),
            ("deployment", execution.get("deployment_id")),
            ("reason", execution.get("reason")),
            ("created", when(execution.get("created_at"))),
        ]
    )


# --- config (API.md "Per-environment configuration"; issue 14) ------------------------------------

CONFIG_FIELDS = ("replicas", "resources", "env", "autoscaling", "probes", "ingress", "auto_rollback")


def _config_call(run: Run, method: str, path: str, body: Any = None) -> Any:
    try:
        return run.api.call(method, path, body=body)
    except ApiError as exc:
        if exc.route_missing:
            raise endpoint_missing("per-environment configuration") from None
        raise


@config_app.command("show")
@handles_errors
def config_show(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument()],
    environment: Annotated[str, typer.Option("--environment", metavar="ENV")],
) -> None:
    """A component's configuration in one environment (secret names only, never values)."""
    run = run_of(ctx)
    answer = _config_call(run, "GET", f"{run.component_path(component)}/environments/{environment}/config")
    if run.output.json:
        run.output.document(answer)
        return
    run.output.fields([(key, answer.get(key)) for key in ("version", *CONFIG_FIELDS, "secret_names")])


@config_app.command("set")
@handles_errors
def config_set(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument()],
    environment: Annotated[str, typer.Option("--environment", metavar="ENV")],
    replicas: Annotated[int | None, typer.Option("--replicas", min=0, max=100)] = None,
    env: Annotated[list[str] | None, typer.Option("--env", metavar="NAME=VALUE")] = None,
    secret: Annotated[list[str] | None, typer.Option("--secret", metavar="NAME=VALUE")] = None,
) -> None:
    """Change some fields of the configuration; the others stay as they are."""
    run = run_of(ctx)
    run.no_ci_token("config set")
    env_pairs = parse_pairs(env, "--env")
    secret_pairs = parse_pairs(secret, "--secret")
    path = f"{run.component_path(component)}/environments/{environment}/config"
    current = _config_call(run, "GET", path) or {}
    # PUT replaces every field but `secrets`: send back what is there, with the changes.
    body: dict[str, Any] = {key: current[key] for key in CONFIG_FIELDS if current.get(key) is not None}
    if replicas is not None:
        body["replicas"] = replicas
    if env_pairs:
        body["env"] = {**(body.get("env") or {}), **env_pairs}
    if secret_pairs:
        body["secrets"] = secret_pairs
    answer = _config_call(run, "PUT", path, body)
    if run.output.json:
        run.output.document(answer)
        return
    run.output.fields(
        [(key, answer.get(key)) for key in ("version", *CONFIG_FIELDS, "secret_names", "deployment_id")]
    )


# --- tokens, keys, data planes ----------------------------------------------------------------------


@tokens_app.command("create")
@handles_errors
def tokens_create(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument()],
    name: Annotated[str | None, typer.Option("--name", help="what it is for, e.g. github")] = None,
    expires_in_days: Annotated[int | None, typer.Option("--expires-in-days", min=1, max=3650)] = None,
) -> None:
    """A new CI token for the component: shown once, store it in your CI's secret store."""
    run = run_of(ctx)
    run.no_ci_token("tokens create")
    body: dict[str, Any] = {}
    if name:
        body["name"] = name
    if expires_in_days:
        body["expires_in_days"] = expires_in_days
    answer = run.api.call("POST", run.component_path(component) + "/tokens", body=body)
    if run.output.json:
        run.output.document(answer)
        return
    run.output.fields(
        [
            ("id", answer.get("id")),
            ("name", answer.get("name")),
            ("token", answer.get("token")),
            ("expires", when(answer.get("expires_at"))),
        ]
    )
    run.output.note("the token is shown only now: store it as LANDFALL_TOKEN in your CI's secret store")


@tokens_app.command("list")
@handles_errors
def tokens_list(ctx: typer.Context, component: Annotated[str, typer.Argument()]) -> None:
    """The component's CI tokens (prefixes only)."""
    run = run_of(ctx)
    answer = run.api.call("GET", run.component_path(component) + "/tokens")
    if run.output.json:
        run.output.document(answer)
        return
    run.output.table(
        ("ID", "NAME", "PREFIX", "CREATED", "EXPIRES", "REVOKED", "LAST USED"),
        [
            (
                t.get("id"),
                t.get("name"),
                t.get("token_prefix"),
                when(t.get("created_at")),
                when(t.get("expires_at")),
                when(t.get("revoked_at")),
                when(t.get("last_used_at")),
            )
            for t in answer.get("items") or []
        ],
        empty=f"no CI tokens for {component}: `landfall tokens create {component}`",
    )


@tokens_app.command("revoke")
@handles_errors
def tokens_revoke(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument()],
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID")],
) -> None:
    """Revoke a CI token: it stops working at once."""
    run = run_of(ctx)
    run.no_ci_token("tokens revoke")
    run.api.call("DELETE", f"{run.component_path(component)}/tokens/{token_id}")
    if run.output.json:
        run.output.document({"id": token_id, "revoked": True})
    else:
        run.output.line(f"revoked {token_id}")


@keys_app.command("create")
@handles_errors
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    role: Annotated[Literal["owner", "developer", "viewer"], typer.Option("--role")],
    expires_in_days: Annotated[int | None, typer.Option("--expires-in-days", min=1)] = None,
) -> None:
    """A new org API key (lfk_…): shown once."""
    run = run_of(ctx)
    run.no_ci_token("keys create")
    body: dict[str, Any] = {"name": name, "role": role}
    if expires_in_days:
        body["expires_in_days"] = expires_in_days
    try:
        answer = run.api.call("POST", f"/v1/orgs/{run.org}/api-keys", body=body)
    except ApiError as exc:
        if exc.route_missing:
            raise endpoint_missing("org API keys") from None
        raise
    if run.output.json:
        run.output.document(answer)
        return
    run.output.fields(
        [
            ("id", answer.get("id")),
            ("name", answer.get("name")),
            ("role", answer.get("role")),
            ("key", answer.get("key")),
            ("expires", when(answer.get("expires_at"))),
        ]
    )
    run.output.note(
        "the key is shown only now: `landfall login --url URL --token-stdin` keeps it in a profile"
    )


@dataplanes_app.command("list")
@handles_errors
def dataplanes_list(ctx: typer.Context) -> None:
    """The org's data planes and whether their agents are connected."""
    run = run_of(ctx)
    answer = run.api.call("GET", f"/v1/orgs/{run.org}/dataplanes")
    if run.output.json:
        run.output.document(answer)
        return
    run.output.table(
        ("ID", "NAME", "ENROLLED", "CONNECTED", "LAST SEEN", "VERSION"),
        [
            (
                d.get("id"),
                d.get("name"),
                d.get("enrolled"),
                (d.get("agent") or {}).get("connected"),
                when((d.get("agent") or {}).get("last_seen")),
                (d.get("agent") or {}).get("version"),
            )
            for d in answer.get("items") or []
        ],
        empty="no data planes yet: `landfall dataplanes create NAME`",
    )


@dataplanes_app.command("create")
@handles_errors
def dataplanes_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    ingress_class: Annotated[str | None, typer.Option("--ingress-class")] = None,
) -> None:
    """Register a data plane; its one-time enrollment token is shown once."""
    run = run_of(ctx)
    run.no_ci_token("dataplanes create")
    body: dict[str, Any] = {"name": name}
    if ingress_class:
        body["ingress_class"] = ingress_class
    answer = run.api.call("POST", f"/v1/orgs/{run.org}/dataplanes", body=body)
    if run.output.json:
        run.output.document(answer)
        return
    run.output.fields(
        [
            ("id", answer.get("id")),
            ("name", answer.get("name")),
            ("enrollment token", answer.get("enrollment_token")),
            ("expires", when(answer.get("enrollment_expires_at"))),
        ]
    )
    run.output.note(
        "start the agent with LANDFALL_ENROLLMENT_TOKEN set to this token (deploy/kubernetes/agent.yaml)"
    )


# --- entry point ---------------------------------------------------------------------------------


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move the global options found anywhere before `--` in front of the command."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_FLAGS:
            front.append(arg)
        elif name in GLOBAL_VALUE_OPTIONS:
            front.append(arg)
            if "=" not in arg and i + 1 < len(args):
                front.append(args[i + 1])
                i += 1
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            front.append(arg)  # -ojson
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="landfall")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return OK
        return code if isinstance(code, int) else FAILED
    except KeyboardInterrupt:
        sys.stderr.write("landfall: interrupted\n")
        return 130
    except httpx.HTTPError as exc:  # a transport failure outside the commands' own handling
        sys.stderr.write(f"landfall: error: {type(exc).__name__}: cannot talk to Landfall; retry\n")
        return UNAVAILABLE
    return OK


if __name__ == "__main__":
    sys.exit(main())
