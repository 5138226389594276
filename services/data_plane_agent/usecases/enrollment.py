"""Finding out who this agent is, once, at start: settings, else agent.json, else enrollment.

Settings (`dataplane_id` + `private_key_file`) come first so that tests and
benchmarks can run many agents without enrolling each; a first start enrolls
and saves agent.json before the agent connects to NATS, so a crash after
enrolling never needs a second token.
"""

from __future__ import annotations

import dataclasses
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
        identity = Identity(settings.dataplane_id, read_private_key(settings.private_key_file))
        return _with_configured_keys(identity, settings)
    existing = load_state(settings.state_dir)
    if existing is not None:
        return _with_configured_keys(existing, settings)
    identity = await enroll(settings)
    path = save_state(settings.state_dir, identity)
    log.info(
        "enrolled",
        extra={"dataplane_id": identity.dataplane_id, "state": str(path), "command_keys": identity.key_ids},
    )
    return _with_configured_keys(identity, settings)


def _with_configured_keys(identity: Identity, settings: Settings) -> Identity:
    """The pinned command keys plus `LANDFALL_COMMAND_PUBLIC_KEYS` (not saved: the setting stays the
    place they come from). Without any, every command will be refused: say so now, once."""
    extra = tuple(key for key in settings.command_keys if key not in identity.command_keys)
    identity = dataclasses.replace(identity, command_keys=identity.command_keys + extra)
    if not identity.command_keys:
        log.error(
            "no command key pinned: every command will be refused (command_rejected); enroll again with a"
            " new token or set LANDFALL_COMMAND_PUBLIC_KEYS",
            extra={"dataplane_id": identity.dataplane_id},
        )
    return identity
