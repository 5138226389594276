"""`python -m services.credentials`: serve the credentials service until SIGTERM."""

from __future__ import annotations

from libs.runtime.http import serve
from services.credentials.app import create_app
from services.credentials.settings import Settings


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
