"""nkeys and NATS v2 JWTs: the key pairs, the token format, and checking a token's own signature.

The format (nats-io/jwt v2) and its subtle points are described in `libs.runtime.natsauth`, which
builds the operator, account and user claims on these and re-exports the names used elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import nkeys
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

KeyKind = Literal["operator", "account", "user"]

_PREFIXES: dict[KeyKind, int] = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
NO_LIMIT = -1


class NatsAuthError(ValueError):
    """A key or JWT is malformed, of the wrong kind, or its signature does not verify."""


# --------------------------------------------------------------------------------------------------
# nkeys
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NKey:
    """An nkeys key pair: `seed` (secret, starts with `S`) and `public_key` (`O…`, `A…` or `U…`)."""

    seed: str = field(repr=False)
    public_key: str

    @classmethod
    def generate(cls, kind: KeyKind) -> NKey:
        seed = nkeys.encode_seed(os.urandom(32), _PREFIXES[kind]).decode()
        return cls.from_seed(seed, kind=kind)

    @classmethod
    def from_seed(cls, seed: str, *, kind: KeyKind | None = None) -> NKey:
        try:
            prefix, _ = nkeys.decode_seed(seed.strip().encode())
            pair = nkeys.from_seed(bytearray(seed.strip().encode()))
            public_key = pair.public_key.decode()
        except (nkeys.NkeysError, binascii.Error, ValueError, TypeError):
            raise NatsAuthError("not an nkeys seed") from None
        if kind is not None and prefix != _PREFIXES[kind]:
            raise NatsAuthError(f"the seed is not an {kind} seed")
        return cls(seed.strip(), public_key)

    def sign(self, data: bytes) -> bytes:
        pair = nkeys.from_seed(bytearray(self.seed.encode()))
        signature: bytes = pair.sign(data)
        return signature


def public_key_bytes(public_key: str, kind: KeyKind | None = None) -> bytes:
    """The raw ed25519 key inside an encoded nkeys public key (checks prefix and CRC16)."""
    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except (binascii.Error, ValueError):
        raise NatsAuthError("not an nkeys public key") from None
    if len(raw) != 35 or nkeys.crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        raise NatsAuthError("not an nkeys public key")
    if raw[0] not in _PREFIXES.values() or (kind is not None and raw[0] != _PREFIXES[kind]):
        raise NatsAuthError(f"not an {kind or 'operator, account or user'} public key")
    return raw[1:33]


def is_user_public_key(value: str) -> bool:
    try:
        public_key_bytes(value, "user")
    except NatsAuthError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# JWT encoding
# --------------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _jti(claims: Mapping[str, Any]) -> str:
    # Go's ClaimsData field order; omitempty drops the empty jti.
    standard = {k: claims[k] for k in ("aud", "exp", "iat", "iss", "name", "nbf", "sub") if claims.get(k)}
    try:
        digest = hashlib.new("sha512_256", _compact(standard)).digest()
    except ValueError:  # an OpenSSL without SHA-512/256: jti is an id, nobody recomputes it
        digest = hashlib.sha256(_compact(standard)).digest()
    return base64.b32encode(digest).rstrip(b"=").decode()


def encode_jwt(
    *,
    subject: str,
    name: str,
    nats: Mapping[str, Any],
    signer: NKey,
    expires_at: int | None = None,
    issued_at: int | None = None,
) -> str:
    """Sign a v2 JWT whose `iss` is `signer` and whose NATS-specific claims are `nats`."""
    iat = int(time.time()) if issued_at is None else issued_at
    claims: dict[str, Any] = {"iat": iat, "iss": signer.public_key, "name": name, "sub": subject}
    if expires_at is not None:
        claims["exp"] = expires_at
    claims = {"jti": _jti(claims), **claims, "nats": {**nats, "version": 2}}
    signing_input = f"{b64url(_compact(_HEADER))}.{b64url(_compact(claims))}"
    return f"{signing_input}.{b64url(signer.sign(signing_input.encode()))}"


def decode_jwt(token: str) -> dict[str, Any]:
    """Claims of a JWT whose signature verifies against its own `iss` key (trust is the caller's job)."""
    try:
        header_b64, claims_b64, signature_b64 = token.strip().split(".")
        header = json.loads(unb64url(header_b64))
        claims = json.loads(unb64url(claims_b64))
        signature = unb64url(signature_b64)
    except (ValueError, binascii.Error):
        raise NatsAuthError("not a JWT") from None
    if not isinstance(header, dict) or header.get("alg") != _HEADER["alg"] or not isinstance(claims, dict):
        raise NatsAuthError("not a NATS v2 JWT")
    issuer = public_key_bytes(str(claims.get("iss", "")))
    try:
        VerifyKey(issuer).verify(f"{header_b64}.{claims_b64}".encode(), signature)
    except (BadSignatureError, ValueError):
        raise NatsAuthError("the JWT signature does not verify") from None
    return claims
