"""The web console: a backend-for-frontend over Landfall's public HTTP API (see README.md)."""
