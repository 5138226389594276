"""Pull secrets sealed to one data plane: the only form in which a password leaves this service.

A libsodium sealed box (X25519 + XSalsa20-Poly1305, anonymous sender) can be
opened only with the data plane's private key, which never leaves its cluster.
The orchestrator and NATS carry the ciphertext without being able to read it.
`recipient_key_id` (sha256 of the raw 32-byte public key, first 16 hex chars)
lets the agent refuse, with a clear reason, a secret sealed to an older key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox

from libs.contracts.messages import SealedSecret

KEY_BYTES = 32


class BadPublicKey(ValueError):
    """The recipient key is not a base64 X25519 public key."""


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def decode_public_key(value: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadPublicKey("recipient_public_key is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise BadPublicKey(f"recipient_public_key must be {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def seal(plaintext: str, *, recipient_public_key: str, registry_id: str) -> SealedSecret:
    raw = decode_public_key(recipient_public_key)
    try:
        ciphertext = SealedBox(PublicKey(raw)).encrypt(plaintext.encode())
    except CryptoError:
        raise BadPublicKey("recipient_public_key is not a usable X25519 key") from None
    return SealedSecret(
        recipient_key_id=key_id(raw),
        ciphertext=base64.b64encode(ciphertext).decode("ascii"),
        registry_id=registry_id,
    )
