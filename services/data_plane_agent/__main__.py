"""`python -m services.data_plane_agent`: run one agent (see settings.py for its environment)."""

import logging
import sys

from libs.runtime.bus import PlaintextRefused
from libs.runtime.http import serve

from .app import create_app
from .clients.kube import KubeConfigError
from .domain.identity import EnrollmentError
from .settings import Settings


def main() -> None:
    try:
        serve(create_app, Settings())
    except (EnrollmentError, KubeConfigError, PlaintextRefused) as exc:
        logging.getLogger("services.data_plane_agent").error("cannot start: %s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
