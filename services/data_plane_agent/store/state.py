"""The agent's identity on disk: `state_dir/agent.json`, and a bare private key file.

agent.json is the agent's one secret store: `{dataplane_id, private_key, org, name,
command_keys}` plus, with NATS auth, the user JWT, its nkeys seed and inbox prefix.
`command_keys` (the orchestrator's public signing keys, pinned at enrollment) is
not secret but is what the agent trusts: whoever can write agent.json owns the
agent anyway. It is
written mode 0600 to a temporary file, fsynced and renamed, so a crash never
leaves half a file; a damaged file stops the agent with what to do, never with
its contents.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from nacl.public import PrivateKey

from libs.runtime.natsauth import NatsUser

from ..domain.identity import EnrollmentError, Identity

STATE_FILE = "agent.json"


def read_private_key(path: Path) -> PrivateKey:
    """32 raw bytes or base64 of them (what `LANDFALL_PRIVATE_KEY_FILE` points at)."""
    raw = path.read_bytes()
    if len(raw) != 32:
        try:
            raw = base64.b64decode(raw.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise EnrollmentError(f"{path} holds neither 32 raw bytes nor base64 of them") from None
    if len(raw) != 32:
        raise EnrollmentError(f"{path} does not hold a 32-byte X25519 private key")
    return PrivateKey(raw)


def save_state(state_dir: Path, identity: Identity) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / STATE_FILE
    tmp = state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    body = {
        "dataplane_id": identity.dataplane_id,
        "private_key": base64.b64encode(bytes(identity.private_key)).decode(),
        "org": identity.org,
        "name": identity.name,
        "command_keys": list(identity.command_keys),
    }
    if identity.nats is not None:
        body["nats_jwt"] = identity.nats.jwt
        body["nats_seed"] = identity.nats.seed
        body["nats_inbox_prefix"] = identity.nats.inbox_prefix
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(body, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_state(state_dir: Path) -> Identity | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        key = PrivateKey(base64.b64decode(data["private_key"]))
        nats = None
        if data.get("nats_jwt"):
            nats = NatsUser(str(data["nats_jwt"]), str(data["nats_seed"]), data.get("nats_inbox_prefix"))
        keys = data.get("command_keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise TypeError("command_keys")
        return Identity(
            str(data["dataplane_id"]), key, data.get("org"), data.get("name"), nats, command_keys=tuple(keys)
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise EnrollmentError(f"{path} is damaged; delete it and enroll again with a new token") from None
