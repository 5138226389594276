"""`landfall`: the command line for people and pipelines, over the public HTTP API only (CLI.md).

Start-up time is part of every `landfall deploy --wait` in CI (bench/cli_overhead.py measures
it), so the package keeps imports lazy: a command's module only when it runs (main.py), the HTTP
client with the first request (context.py), Rich only to draw a table or a spinner (output.py).
tests/unit/test_cli_imports.py holds the deploy path to that.
"""
