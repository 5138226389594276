"""`python -m services.webhook_gateway`: serve the gateway until SIGTERM."""

from __future__ import annotations

from libs.runtime.http import serve
from services.webhook_gateway.app import create_app
from services.webhook_gateway.settings import Settings


def main() -> None:
    serve(create_app, Settings())


if __name__ == "__main__":
    main()
