"""`python -m services.orchestrator`: serve the orchestrator until SIGTERM."""

from __future__ import annotations

from libs.runtime.http import serve
from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
