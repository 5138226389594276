"""Who and where: flags beat the environment, which beats the saved profile, which beats defaults.

Profiles live in `$XDG_CONFIG_HOME/landfall/config.toml` (default `~/.config/landfall/config.toml`),
a file only its owner can read (0600, its directory 0700), one table per profile:

    current = "default"

    [profiles.default]
    url = "https://landfall.example.com"
    token = "lfk_…"
    org = "default"
    project = "default"

The standard library reads TOML (`tomllib`, imported only when the file exists) but does not
write it: `dumps` writes this one shape by hand, with TOML's string escapes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from libs.cli.errors import USAGE, CliError

DEFAULT_PROFILE: Final = "default"
DEFAULT_ORG: Final = "default"
DEFAULT_PROJECT: Final = "default"
FIELDS: Final = ("url", "token", "org", "project")
ENV: Final = {
    "url": "LANDFALL_URL",
    "token": "LANDFALL_TOKEN",
    "org": "LANDFALL_ORG",
    "project": "LANDFALL_PROJECT",
    "profile": "LANDFALL_PROFILE",
}


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "landfall"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / "config.toml"


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import tomllib  # only when there is a profile file: a CI job usually has none

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        # The message names the file and the position, never the content (it holds tokens).
        raise CliError(USAGE, f"error: cannot read {path}: {type(exc).__name__}; fix or delete it") from None
    return data


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    for char, code in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = escaped.replace(char, code)
    return f'"{escaped}"'


def dumps(data: Mapping[str, Any]) -> str:
    """TOML for our one shape: a `current` string and string-valued profile tables."""
    lines = []
    if data.get("current"):
        lines.append(f"current = {_toml_string(str(data['current']))}")
    for name, profile in sorted((data.get("profiles") or {}).items()):
        lines.append("")
        lines.append(f"[profiles.{_toml_string(name)}]")
        for key in FIELDS:
            if profile.get(key):
                lines.append(f"{key} = {_toml_string(str(profile[key]))}")
    return "\n".join(lines).lstrip("\n") + "\n"


def write_private(path: Path, text: str) -> None:
    """Write `text` so that only the owner can ever read it (no window with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def save_profile(path: Path, name: str, values: Mapping[str, str | None], *, make_current: bool) -> None:
    data = load(path)
    profiles: dict[str, Any] = dict(data.get("profiles") or {})
    profile = dict(profiles.get(name) or {})
    profile.update({k: v for k, v in values.items() if v})
    profiles[name] = profile
    data["profiles"] = profiles
    if make_current or not data.get("current"):
        data["current"] = name
    write_private(path, dumps(data))


@dataclass(frozen=True)
class Settings:
    url: str | None
    token: str | None
    org: str
    project: str
    profile: str | None

    def require_url(self) -> str:
        if not self.url:
            raise CliError(
                USAGE,
                "error: no Landfall address: pass --url, set LANDFALL_URL, or run `landfall login --url URL`",
            )
        return self.url


def resolve(
    flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None, path: Path | None = None
) -> Settings:
    """Each setting from the first place that has it: flag, environment, profile, default."""
    env = os.environ if environ is None else environ
    file = path or config_path(env)
    data = load(file)
    profiles: dict[str, Any] = data.get("profiles") or {}
    wanted = flags.get("profile") or env.get(ENV["profile"]) or None
    if wanted and wanted not in profiles:
        known = ", ".join(sorted(profiles)) or "none yet"
        raise CliError(
            USAGE,
            f"error: no profile {wanted!r} in {file} (profiles: {known}); run `landfall login --profile`",
        )
    name = wanted or data.get("current") or (DEFAULT_PROFILE if DEFAULT_PROFILE in profiles else None)
    profile: dict[str, Any] = profiles.get(name) or {} if name else {}

    def pick(key: str) -> str | None:
        value = flags.get(key) or env.get(ENV[key]) or profile.get(key)
        return str(value) if value else None

    return Settings(
        url=pick("url"),
        token=pick("token"),
        org=pick("org") or DEFAULT_ORG,
        project=pick("project") or DEFAULT_PROJECT,
        profile=name,
    )
