"""`python -m services.data_plane_agent`: run one agent (see settings.py for its environment)."""

import logging
import sys

from libs.runtime.http import run
from libs.runtime.logs import setup_logging

from .app import create_app
from .identity import EnrollmentError
from .kube import KubeConfigError
from .settings import Settings


def main() -> None:
    settings = Settings()
    setup_logging(service=settings.service_name, level=settings.log_level, fmt=settings.log_format)
    try:
        run(
            create_app(settings),
            host=settings.http_host,
            port=settings.http_port,
            shutdown_timeout=settings.shutdown_timeout_seconds,
        )
    except (EnrollmentError, KubeConfigError) as exc:
        logging.getLogger("services.data_plane_agent").error("cannot start: %s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
