"""The `landfall` command (CLI.md): the root group, its global options, and `main()`, the entry
point of pyproject.toml. The commands themselves live in `libs/cli/commands/`, one module a noun.

Global options (`--url`, `--token`, `--token-stdin`, `--org`, `--project`, `--profile`,
`-o/--output`) may stand anywhere before `--`: `main` moves them in front of the command, so
`landfall deploy hello --tag 1.1 -o json` and `landfall -o json deploy hello --tag 1.1` are one.

Subtle:
- Plain Click, not Typer: Typer 0.29 built a pydantic TypeAdapter per parameter on every run
  (~100 ms of a `deploy --wait`); the commands, options, help texts and exit codes are the same.
- Click runs in non-standalone mode so that `run` decides every exit code: usage errors 2,
  `CliError`s their own (context.py), Ctrl-C 130 (as Typer did), `Aborted!` 1.
- `main()` as the program ends the process with `os._exit` once its output is flushed: the
  interpreter's teardown of every imported module is pure cost for a command that is done.
- Nothing heavy is imported here: only the module of the command being run (COMMANDS), the HTTP
  client with the first request (context.py), Rich with the first table or spinner (output.py),
  the `--wait` machinery with `--wait` (following.py).
- `-o` is handed to Click as `--output`: Click's parser tries every short option as a long one
  first, and the failed try imports `difflib` to suggest a spelling nobody sees.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from libs.cli import completion
from libs.cli.context import Group, Run
from libs.cli.errors import FAILED, OK, UNAVAILABLE
from libs.cli.output import Output

GLOBAL_VALUE_OPTIONS = frozenset({"--url", "--token", "--org", "--project", "--profile", "--output", "-o"})
GLOBAL_FLAGS = frozenset({"--token-stdin"})


# Each command's module, in the order `landfall --help` lists them: what is typed most, then the
# nouns. Only the module of the command being run is imported (help and completion import all).
COMMANDS = {
    "login": "login:login",
    "deploy": "deploys:deploy",
    "promote": "deploys:promote",
    "status": "deploys:status",
    "history": "deploys:history",
    "run": "deploys:run_task",
    "registries": "registries:registries",
    "components": "components:components",
    "tokens": "tokens:tokens",
    "keys": "keys:keys",
    "config": "config:config",
    "dataplanes": "dataplanes:dataplanes",
}


class Landfall(Group):
    """The root group: its commands are found in COMMANDS and imported when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command = getattr(importlib.import_module(f"libs.cli.commands.{module}"), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(
    cls=Landfall,
    name="landfall",
    help="Landfall from the command line: registries, components, deploys, promotions, runs, tokens.",
)
@click.option("--url", metavar="URL", help="Landfall's one address [env: LANDFALL_URL]")
@click.option(
    "--token",
    metavar="TOKEN",
    help="an org API key, the admin token, or a CI token (lfci_…) [env: LANDFALL_TOKEN]",
)
@click.option("--token-stdin", is_flag=True, help="read the token from standard input")
@click.option("--org", metavar="ORG", help="[env: LANDFALL_ORG; default: default]")
@click.option("--project", metavar="PROJECT", help="[env: LANDFALL_PROJECT; default: default]")
@click.option("--profile", metavar="NAME", help="a profile saved by `landfall login` [env: LANDFALL_PROFILE]")
@click.option(
    "-o",
    "--output",
    type=click.Choice(("table", "json")),
    default="table",
    show_default=True,
    help="table for people, or the API's JSON",
)
@completion.options
@click.pass_context
def app(
    ctx: click.Context,
    url: str | None,
    token: str | None,
    token_stdin: bool,
    org: str | None,
    project: str | None,
    profile: str | None,
    output: str,
) -> None:
    """Flags beat the environment, which beats the saved profile."""
    if token and token_stdin:
        raise click.BadParameter("give --token or --token-stdin, not both", param_hint="--token-stdin")
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
            front.append("--output" + arg[2:] if name == "-o" else arg)
            if "=" not in arg and i + 1 < len(args):
                front.append(args[i + 1])
                i += 1
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            front.append("--output=" + arg[2:])  # -ojson
        else:
            rest.append(arg)
        i += 1
    return front + rest


def main(argv: Sequence[str] | None = None) -> int:
    """The `landfall` program (argv None: it ends the process) or one run of it (argv given: the code)."""
    code = run(sys.argv[1:] if argv is None else argv)
    if argv is None:
        # The program: its output is complete, so end the process now rather than tear down the
        # ~400 modules it imported one by one (15-30 ms of every CI deploy). Nothing is left to
        # do at exit: no atexit handler of ours, no open file, and the kernel closes the socket.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe (`landfall … | head`): Python's own shutdown reports it
            return code
        os._exit(code)
    return code


def run(argv: Sequence[str]) -> int:
    args = hoist_global_options(argv)
    try:
        code = app.main(args=args, prog_name="landfall", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return 130
        sys.stderr.write("Aborted!\n")
        return FAILED
    except click.ClickException as exc:  # usage errors (2), with Click's own message
        exc.show()
        return exc.exit_code
    except SystemExit as exc:  # shell completion, and Click's own exit on a broken pipe
        if exc.code is None:
            return OK
        return exc.code if isinstance(exc.code, int) else FAILED
    except KeyboardInterrupt:
        sys.stderr.write("landfall: interrupted\n")
        return 130
    except Exception as exc:
        transport = sys.modules.get("libs.cli.transport")
        if transport is not None and isinstance(exc, transport.TransportError):  # a transport
            # failure outside the commands' own handling
            sys.stderr.write(f"landfall: error: cannot talk to Landfall ({exc}); retry\n")
            return UNAVAILABLE
        raise
    return code if isinstance(code, int) else OK


if __name__ == "__main__":
    sys.exit(main())
