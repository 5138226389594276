"""`landfall`: the command line for people and pipelines, over the public HTTP API only (CLI.md)."""
