"""`python -m services.console`: serve the console until SIGTERM."""

from __future__ import annotations

from libs.runtime.http import serve
from services.console.app import create_app
from services.console.settings import Settings


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
