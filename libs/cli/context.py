"""What every command shares: the `Run` (settings, output, the client), and how a command gets it.

A command is a plain function `f(run, **options)` under `@runs`: the decorator finds the `Run`
that the root callback (main.py) stored on Click's context and turns a `CliError` into its
message on standard error and its exit code (errors.py), so no command handles either itself.

Subtle:
- Settings are resolved on first use, not in the root callback: `--help` and usage errors must
  not read the profile file, nor standard input for `--token-stdin`.
- `Api` (and with it `http.client`, which brings `email` and `ssl`) is made on first use for the
  same reason: the import stays inside `Run.api`, so `landfall --help` never pays it.
- `no_ci_token` asks `run.api`, not the token alone: a missing `--url` (exit 2) is reported before
  a CI token used for a management command (exit 3), as it always was.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

import click

from libs.cli import config as cfg
from libs.cli.errors import REFUSED, CliError, usage
from libs.cli.output import Output

if TYPE_CHECKING:
    from libs.cli.client import Api

P = ParamSpec("P")

DEFAULT_TIMEOUT = 1800.0


class Group(click.Group):
    """A group whose help lists its commands in the order they were added, not alphabetically."""

    group_class = type  # subgroups made with `@group.group()` are of this class too

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


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
            url = self.settings.require_url()
            from libs.cli.client import Api

            self._api = Api(url, self.settings.token)
        return self._api

    @property
    def org(self) -> str:
        """--org, LANDFALL_ORG, the profile's, or `default`."""
        return self.settings.org

    def component_path(self, component: str) -> str:
        return f"/v1/orgs/{self.org}/projects/{self.project}/components/{component}"

    @property
    def project(self) -> str:
        """--project, LANDFALL_PROJECT, the profile's, or `default`."""
        return self.settings.project

    def no_ci_token(self, command: str) -> None:
        if self.api.ci:
            raise CliError(
                REFUSED,
                f"error: a CI token (lfci_…) can only deploy and read deployments, not `{command}`\n"
                "  next: use an org API key or the admin token (--token, LANDFALL_TOKEN or `landfall login`)",
            )


def run_of(ctx: click.Context) -> Run:
    obj = ctx.find_root().obj
    assert isinstance(obj, Run)
    return obj


def runs(func: Callable[Concatenate[Run, P], None]) -> Callable[P, None]:
    """The command gets the `Run` as its first argument; a CliError becomes its message and exit code."""

    @functools.wraps(func)
    def command(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            func(run_of(click.get_current_context()), *args, **kwargs)
        except CliError as exc:
            sys.stdout.flush()
            sys.stderr.write(f"landfall: {exc.message}\n")
            sys.stderr.flush()
            raise click.exceptions.Exit(exc.code) from None

    return command


def list_command(group: click.Group, about: str, path: str, columns: str, *, empty: str) -> click.Command:
    """`GROUP list`, the `about` of its help: GET `path` (with `{org}` and `{project}` filled in)
    as it is with `-o json`, else as a table of `columns` (a `pick` spec, output.py)."""

    @group.command("list", help=about)
    @runs
    def list_items(run: Run) -> None:
        answer = run.api.call("GET", path.format(org=run.org, project=run.project))
        run.output.listing(answer, columns, empty=empty)

    return list_items


def read_stdin_secret(flag: str) -> str:
    if sys.stdin.isatty():
        sys.stderr.write(f"landfall: reading {flag} from standard input (end with Ctrl-D) …\n")
    value = sys.stdin.read()
    value = value[:-1] if value.endswith("\n") else value
    value = value[:-1] if value.endswith("\r") else value
    if not value:
        raise usage(f"error: {flag}: standard input was empty")
    return value


def given(**values: Any) -> dict[str, Any]:
    """The options that were given (not None, not empty), as a request's body or query."""
    return {key: value for key, value in values.items() if value}


def parse_pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """`--env NAME=VALUE`, repeated, as a dict (a later NAME wins)."""
    pairs: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise usage(f"error: {flag} takes NAME=VALUE (got something without '=' for {name or '?'})")
        pairs[name] = value
    return pairs
