"""Finding out who this agent is, once, at start: settings, else agent.json, else enrollment.

Settings (`dataplane_id` + `private_key_file`) come first so that tests and
benchmarks can run many agents without enrolling each; a first start enrolls
and saves agent.json before the agent connects to NATS, so a crash after
enrolling never needs a second token.
"""

from __future__ import annotations

import logging

from ..clients.orchestrator import enroll
from ..domain.identity import EnrollmentError, Identity
from ..settings import Settings
from ..store.state import load_state, read_private_key, save_state

log = logging.getLogger(__name__)


async def load_identity(settings: Settings) -> Identity:
    """Settings first (`dataplane_id` + `private_key_file`), then agent.json, then enrollment."""
    if settings.dataplane_id or settings.private_key_file:
        if not (settings.dataplane_id and settings.private_key_file):
            raise EnrollmentError("set both LANDFALL_DATAPLANE_ID and LANDFALL_PRIVATE_KEY_FILE, or neither")
        return Identity(settings.dataplane_id, read_private_key(settings.private_key_file))
    existing = load_state(settings.state_dir)
    if existing is not None:
        return existing
    identity = await enroll(settings)
    path = save_state(settings.state_dir, identity)
    log.info("enrolled", extra={"dataplane_id": identity.dataplane_id, "state": str(path)})
    return identity
