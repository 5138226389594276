"""Who this agent is: its data plane id, the X25519 key that opens pull secrets, its NATS user.

The private key never leaves the process: the orchestrator seals registry
credentials to the public key (libsodium sealed box) and only this agent can
open them. The NATS user (JWT + nkeys seed, minted at enrollment) is limited to
this data plane's subjects; nats-server enforces it. The command keys are the
orchestrator's public signing keys, pinned at enrollment (`libs.contracts.signing`). How an identity is
obtained (enrollment, `clients/orchestrator.py`) and kept (agent.json,
`store/state.py`) lives next door; this module is crypto only.

`recipient_key_id` is sha256 over the raw 32-byte public key, hex, first 16 chars.
An id that differs from ours while the box still opens is only logged: the box
opening proves the secret is ours, the sealer merely computed the id otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from dataclasses import dataclass, field

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from libs.contracts import reasons, signing
from libs.contracts.config import secret_name_ok
from libs.contracts.messages import SealedSecret, SealedValues
from libs.runtime.natsauth import NatsUser

log = logging.getLogger(__name__)


class EnrollmentError(Exception):
    """The agent cannot find out who it is; the message says what to do (and holds no secret)."""


class SealedSecretError(Exception):
    """A pull secret (or config secrets) this agent cannot open: the deployment fails with `reason`."""

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
    # base64 Ed25519 public keys whose signatures on commands this agent accepts: pinned at enrollment
    # (agent.json), plus any LANDFALL_COMMAND_PUBLIC_KEYS. None pinned: every command is refused.
    command_keys: tuple[str, ...] = ()

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

    @property
    def key_ids(self) -> list[str]:
        """The ids of the pinned command keys (for log lines: ids, not keys)."""
        return [signing.key_id(base64.b64decode(key)) for key in self.command_keys]

    def open(self, sealed: SealedSecret) -> bytes:
        """Decrypt a sealed pull secret; never put the result in a log line or an error."""
        return self._open(
            sealed.recipient_key_id,
            sealed.ciphertext,
            what="pull secret",
            wrong=reasons.PULL_SECRET_WRONG_RECIPIENT,
            unreadable=reasons.PULL_SECRET_UNREADABLE,
        )

    def open_values(self, sealed: SealedValues) -> dict[str, str]:
        """Decrypt an environment's config secrets: a flat JSON object of env names to strings.
        Anything else is `config_secrets_unreadable`; the error never holds a value."""
        plaintext = self._open(
            sealed.recipient_key_id,
            sealed.ciphertext,
            what="config secrets",
            wrong=reasons.CONFIG_SECRETS_WRONG_RECIPIENT,
            unreadable=reasons.CONFIG_SECRETS_UNREADABLE,
        )
        try:
            values = json.loads(plaintext)
        except (ValueError, RecursionError):
            values = None
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and secret_name_ok(k) and isinstance(v, str) for k, v in values.items()
        ):
            raise SealedSecretError(
                reasons.CONFIG_SECRETS_UNREADABLE,
                "the sealed config secrets are not an object of names to strings",
            )
        return values

    def _open(self, recipient: str, ciphertext: str, *, what: str, wrong: str, unreadable: str) -> bytes:
        matches = recipient == self.key_id
        try:
            plaintext: bytes = SealedBox(self.private_key).decrypt(base64.b64decode(ciphertext))
        except (CryptoError, binascii.Error, ValueError):
            if not matches:
                raise SealedSecretError(
                    wrong,
                    f"the {what} {'were' if what.endswith('s') else 'was'} sealed to key {recipient},"
                    f" ours is {self.key_id} (was the data plane enrolled again?)",
                ) from None
            raise SealedSecretError(unreadable, f"the sealed {what} cannot be opened") from None
        if not matches:
            log.warning(
                "sealed secret recipient_key_id differs from ours",
                extra={"given": recipient, "ours": self.key_id},
            )
        return plaintext
