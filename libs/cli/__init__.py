"""`landfall`: the command line for people and pipelines, over the public HTTP API only (CLI.md).

Start-up time is part of every `landfall deploy --wait` in CI (bench/cli_overhead.py measures
it), so the package keeps imports lazy: Rich is imported only to draw a table or a spinner,
and httpx's own command line (`httpx._main`, which imports click, rich and pygments when they
are installed: about a third of the start-up) is kept out. httpx's `__init__` imports it
inside `try/except ImportError`, and a `None` in `sys.modules` makes that import fail cleanly.
"""

import sys

if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
