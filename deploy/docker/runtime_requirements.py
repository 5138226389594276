"""The runtime-only part of requirements.lock, hashes kept: what the image installs.

requirements.lock pins `.[servers,dev]` (the test servers, pytest, mypy, ...), because `make deps`
installs one set for everything. An image must carry only what the services import, at the very
versions CI tested, so this script filters the lock instead of resolving a second one: a second
resolution could pick other versions than the ones every test ran on, and it would need the index
at build time.

How: pip-compile writes, under each pin, `# via` the packages that require it. The runtime set is
the closure of `[project].dependencies` over those edges: a package is kept when a kept package
requires it. Lines stay byte for byte as in the lock (with their `--hash=`), so the Dockerfile
installs them with `pip install --require-hashes --no-deps` and then runs `pip check`, which fails
the build if the closure missed a requirement.

What is subtle:
- `via` names the requirer, not why: a package an extra of a runtime package pulls in (never
  asked for here) is kept too. Keeping a little more is safe; keeping less fails `pip check`.
- `landfall (pyproject.toml)` in `via` marks a direct requirement of ANY extra, so the direct
  requirements are read from `[project].dependencies` itself, never from that marker.
- pip and setuptools sit in the lock's "unsafe" section and are kept only if a runtime package
  requires them (none does today): the final image has neither.

    python deploy/docker/runtime_requirements.py [requirements.lock [pyproject.toml]] > runtime.lock
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)(?:\s+\(.*\))?\s*$")


def normalize(name: str) -> str:
    """PEP 503: `Typing_Extensions` and `typing-extensions` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    name: str
    lines: list[str] = field(default_factory=list)
    required_by: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, Pin]:
    """Every pin of a pip-compile lock, with its lines (pin, hashes, via) and who requires it."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = pins[normalize(pin.group(1))] = Pin(normalize(pin.group(1)), [line])
            continue
        if current is None:
            continue
        if not line.startswith((" ", "\t")):
            current = None  # a comment of the file itself ("The following packages are ... unsafe")
            continue
        current.lines.append(line)
        via = _VIA.match(line)
        if via and "#" in line:
            current.required_by.add(normalize(via.group(1)))
    return pins


def direct_requirements(pyproject: str) -> set[str]:
    data = tomllib.loads(pyproject)
    names = set()
    for requirement in data["project"]["dependencies"]:
        match = _NAME.match(requirement)
        if match:
            names.add(normalize(match.group(1)))
    return names


def runtime_closure(pins: dict[str, Pin], direct: set[str]) -> set[str]:
    missing = direct - pins.keys()
    if missing:
        raise SystemExit(f"not in the lock (run `make lock`): {', '.join(sorted(missing))}")
    kept = set(direct)
    grew = True
    while grew:
        grew = False
        for name, pin in pins.items():
            if name not in kept and pin.required_by & kept:
                kept.add(name)
                grew = True
    return kept


def runtime_lock(lock: str, pyproject: str) -> str:
    pins = parse_lock(lock)
    kept = runtime_closure(pins, direct_requirements(pyproject))
    header = "# The runtime part of requirements.lock (deploy/docker/runtime_requirements.py); do not edit.\n"
    body = "".join("\n".join(pins[name].lines) + "\n" for name in sorted(kept))
    return header + body


def main(argv: list[str]) -> int:
    lock = Path(argv[0] if argv else "requirements.lock")
    pyproject = Path(argv[1] if len(argv) > 1 else "pyproject.toml")
    sys.stdout.write(runtime_lock(lock.read_text(), pyproject.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
