"""`landfall --install-completion` and `--show-completion`: Click's shell completion for bash,
zsh and fish, installed where the Typer-based landfall put it.

Subtle:
- The shell is the last part of `$SHELL` (Typer asked shellingham, which walks the process tree).
- Click's completion protocol (`_LANDFALL_COMPLETE=bash_complete`) is not Typer's
  (`complete_bash`): a script installed by an older landfall completes nothing until
  `--install-completion` is run again, which overwrites it in the same place.
- Completing itself never reaches a command: Click answers `_LANDFALL_COMPLETE` before parsing,
  and imports `click.shell_completion` only then, so a normal run pays nothing for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
SHELLS = ("bash", "zsh", "fish")


def _shell() -> str:
    shell = Path(os.environ.get("SHELL") or "").name
    if shell not in SHELLS:
        click.echo(f"Shell {shell or '(unknown: SHELL is not set)'} is not supported.", err=True)
        raise click.exceptions.Exit(1)
    return shell


def _source(ctx: click.Context, shell: str) -> tuple[str, str]:
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    prog = root.info_name or "landfall"
    complete_var = "_{}_COMPLETE".format(prog.replace("-", "_").replace(".", "_").upper())
    cls = get_completion_class(shell)
    assert cls is not None
    return prog, cls(root.command, {}, prog, complete_var).source()


def _ensure_line(rc: Path, line: str) -> None:
    text = rc.read_text() if rc.is_file() else ""
    if line not in text:
        rc.write_text(f"{text.rstrip()}\n{line}\n".lstrip("\n"))


def _install(prog: str, shell: str, source: str) -> Path:
    home = Path.home()
    if shell == "bash":
        path = home / ".bash_completions" / f"{prog}.sh"
        _ensure_line(home / ".bashrc", f"source '{path}'")
    elif shell == "zsh":
        path = home / ".zfunc" / f"_{prog}"
        _ensure_line(home / ".zshrc", "fpath+=~/.zfunc; autoload -Uz compinit; compinit")
    else:
        path = home / ".config" / "fish" / "completions" / f"{prog}.fish"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source + "\n")
    return path


def _show_completion(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(_source(ctx, _shell())[1])
    ctx.exit()


def _install_completion(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    shell = _shell()
    prog, source = _source(ctx, shell)
    path = _install(prog, shell, source)
    click.secho(f"{shell} completion installed in {path}", fg="green")
    click.echo("Completion will take effect once you restart the terminal")
    ctx.exit()


def options(func: F) -> F:
    """The two options of the root group (eager: they act before any command is looked at)."""
    for name, callback, text in (
        (
            "--show-completion",
            _show_completion,
            "Show completion for the current shell, to copy it or customize the installation.",
        ),
        ("--install-completion", _install_completion, "Install completion for the current shell."),
    ):
        option = click.option(
            name, is_flag=True, expose_value=False, is_eager=True, callback=callback, help=text
        )
        func = option(func)
    return func
