"""`python -m services.credentials`: serve the credentials service until SIGTERM."""

from __future__ import annotations

from libs.runtime.http import run
from libs.runtime.logs import setup_logging
from services.credentials.app import create_app
from services.credentials.settings import Settings


def main() -> None:
    settings = Settings()
    setup_logging(service=settings.service_name, level=settings.log_level, fmt=settings.log_format)
    run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout=settings.shutdown_timeout_seconds,
    )


if __name__ == "__main__":
    main()
