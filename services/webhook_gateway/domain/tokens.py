"""CI token format: `lfci_` + base62(32 random bytes) + a 6-character CRC32 checksum.

Why this shape (GitHub's token format, 2021): the fixed `lfci_` prefix lets
secret scanners find a leaked token, and the checksum lets the gateway refuse a
typo or a made-up string before it touches the database, which keeps garbage
traffic off the hot path. The checksum is not a security property: only the
256 random bits are.

What we keep: the SHA-256 of the whole token (a fast hash is right here, the
token has 256 bits of entropy, so there is nothing to brute-force) and the
first 12 characters as `token_prefix`, which is what logs, the token list and
bus messages show. The full token exists only in the 201 answer that creates it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from typing import Final

TOKEN_PREFIX: Final = "lfci_"
PREFIX_LENGTH: Final = 12
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_BYTES: Final = 32
_BODY_LENGTH: Final = 43  # ceil(256 / log2(62))
_CHECKSUM_LENGTH: Final = 6  # 62**6 > 2**32
TOKEN_LENGTH: Final = len(TOKEN_PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
_SHAPE: Final = re.compile(rf"{TOKEN_PREFIX}[0-9A-Za-z]{{{_BODY_LENGTH + _CHECKSUM_LENGTH}}}", re.ASCII)


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    if number:
        raise ValueError("number does not fit the width")
    return "".join(reversed(chars))


def _checksum(head: str) -> str:
    return _base62(zlib.crc32(head.encode("ascii")), _CHECKSUM_LENGTH)


def generate_token() -> str:
    """A new CI token (show it once, store only `token_hash` and `token_prefix`)."""
    body = _base62(int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big"), _BODY_LENGTH)
    head = TOKEN_PREFIX + body
    return head + _checksum(head)


def well_formed(token: str) -> bool:
    """Prefix, length, alphabet and checksum are right (no database needed)."""
    if len(token) != TOKEN_LENGTH or not _SHAPE.fullmatch(token):
        return False
    head, check = token[:-_CHECKSUM_LENGTH], token[-_CHECKSUM_LENGTH:]
    return secrets.compare_digest(_checksum(head), check)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_prefix(token: str) -> str:
    """What may be shown and logged: `lfci_` and 7 random characters."""
    return token[:PREFIX_LENGTH]
