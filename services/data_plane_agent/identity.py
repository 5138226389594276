"""Who this agent is: its data plane id, the X25519 key that opens pull secrets, its NATS user.

At the first start the agent generates a key pair, enrolls with the orchestrator
(`POST /v1/dataplanes/enroll` with the one-time enrollment token and the PUBLIC
key) and stores `{dataplane_id, private_key}` in `state_dir/agent.json`, mode 0600
(written to a temporary file and renamed, so a crash never leaves half a file).
Later starts reuse that file and need no token. The private key never leaves the
process: the orchestrator seals registry credentials to the public key
(libsodium sealed box) and only this agent can open them.

The same goes for NATS: the agent also generates an nkeys user key and sends its
public half; an orchestrator that can mint NATS users answers a user JWT whose
permissions cover only this data plane's subjects (nats-server enforces them).
JWT, seed and inbox prefix are kept in agent.json too; the seed never leaves it.
Without a JWT in the answer the agent connects as its settings say.

`recipient_key_id` is sha256 over the raw 32-byte public key, hex, first 16 chars.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from pydantic import BaseModel

from libs.contracts.ids import looks_like
from libs.contracts.messages import SealedSecret
from libs.runtime.errors import DependencyUnavailable
from libs.runtime.natsauth import NatsAuthError, NatsUser, NKey, agent_inbox_prefix, decode_jwt

from .settings import Settings

log = logging.getLogger(__name__)

STATE_FILE = "agent.json"


class EnrollmentError(Exception):
    """The agent cannot find out who it is; the message says what to do (and holds no secret)."""


class OrchestratorUnavailable(DependencyUnavailable):
    pass


class SealedSecretError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class Identity:
    dataplane_id: str
    private_key: PrivateKey = field(repr=False)
    org: str | None = None
    name: str | None = None
    nats: NatsUser | None = field(default=None, repr=False)

    @classmethod
    def generate(cls, dataplane_id: str) -> Identity:
        return cls(dataplane_id, PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        return bytes(self.private_key.public_key)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def open(self, sealed: SealedSecret) -> bytes:
        """Decrypt a sealed pull secret; never put the result in a log line or an error."""
        matches = sealed.recipient_key_id == self.key_id
        try:
            plaintext: bytes = SealedBox(self.private_key).decrypt(base64.b64decode(sealed.ciphertext))
        except (CryptoError, binascii.Error, ValueError):
            if not matches:
                raise SealedSecretError(
                    "pull_secret_wrong_recipient",
                    f"the pull secret was sealed to key {sealed.recipient_key_id}, ours is {self.key_id}"
                    " (was the data plane enrolled again?)",
                ) from None
            raise SealedSecretError(
                "pull_secret_unreadable", "the sealed pull secret cannot be opened"
            ) from None
        if not matches:
            # The box opened, so it is ours; the id was computed differently by the sealer.
            log.warning(
                "sealed secret recipient_key_id differs from ours",
                extra={"given": sealed.recipient_key_id, "ours": self.key_id},
            )
        return plaintext


class EnrollRequest(BaseModel):
    enrollment_token: str
    public_key: str
    version: str
    nats_user_public_key: str | None = None


class EnrollReply(BaseModel):
    dataplane_id: str
    org: str | None = None
    name: str | None = None
    nats_jwt: str | None = None
    nats_inbox_prefix: str | None = None


def read_private_key(path: Path) -> PrivateKey:
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
        return Identity(str(data["dataplane_id"]), key, data.get("org"), data.get("name"), nats)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise EnrollmentError(f"{path} is damaged; delete it and enroll again with a new token") from None


async def enroll(settings: Settings, *, session: aiohttp.ClientSession | None = None) -> Identity:
    """Trade the enrollment token for a data plane id, retrying while the orchestrator is down."""
    if settings.enrollment_token is None or not settings.enrollment_token.get_secret_value():
        raise EnrollmentError(
            f"no agent state in {settings.state_dir} and no LANDFALL_ENROLLMENT_TOKEN: create a data plane "
            "(POST /v1/orgs/{org}/dataplanes) and start the agent with its enrollment token"
        )
    key = PrivateKey.generate()
    nats_key = NKey.generate("user")
    body = EnrollRequest(
        enrollment_token=settings.enrollment_token.get_secret_value(),
        public_key=base64.b64encode(bytes(key.public_key)).decode(),
        version=settings.version,
        nats_user_public_key=nats_key.public_key,
    )
    url = settings.orchestrator_url.rstrip("/") + "/v1/dataplanes/enroll"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.enrollment_wait_seconds
    own = session is None
    http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        while True:
            try:
                async with http.post(url, json=body.model_dump()) as resp:
                    text = await resp.text()
                    if resp.status in (200, 201):
                        reply = EnrollReply.model_validate_json(text)
                        break
                    if resp.status < 500 and resp.status not in (408, 429):
                        raise EnrollmentError(
                            f"the orchestrator refused the enrollment ({resp.status}): {_detail(text)}"
                        )
                    problem: str = f"answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = repr(exc)
            if loop.time() > deadline:
                raise OrchestratorUnavailable(f"cannot enroll at {url}: {problem}")
            log.warning("enrollment: orchestrator not answering; retrying", extra={"error": problem})
            await asyncio.sleep(1)
    finally:
        if own:
            await http.close()
    if not looks_like("dp", reply.dataplane_id):
        raise EnrollmentError(
            f"the orchestrator answered an invalid data plane id {reply.dataplane_id[:40]!r}"
        )
    nats = _nats_user(reply, nats_key) if reply.nats_jwt else None
    return Identity(reply.dataplane_id, key, reply.org, reply.name, nats)


def _nats_user(reply: EnrollReply, key: NKey) -> NatsUser:
    assert reply.nats_jwt is not None
    try:
        subject = decode_jwt(reply.nats_jwt).get("sub")
    except NatsAuthError as exc:
        raise EnrollmentError(f"the orchestrator answered an unusable NATS JWT: {exc}") from None
    if subject != key.public_key:
        raise EnrollmentError("the orchestrator answered a NATS JWT for another user key")
    inbox_prefix = reply.nats_inbox_prefix or agent_inbox_prefix(reply.dataplane_id)
    return NatsUser(reply.nats_jwt, key.seed, inbox_prefix)


def _detail(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(doc, dict):
        return str(doc.get("detail") or doc.get("title") or "")[:200]
    return text[:200]


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
