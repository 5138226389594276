"""The format of Landfall's bearer secrets: CI tokens (`lfci_…`) and org API keys (`lfk_…`).

Why this shape (GitHub's token format, 2021): a fixed prefix lets secret
scanners find a leaked token and lets a service tell a key from a CI token
without a lookup; the checksum lets a service refuse a typo or a made-up string
before it touches a database or the bus, which keeps garbage traffic off the hot
path. The checksum is not a security property: only the 256 random bits are.

What services keep: the SHA-256 of the whole token (a fast hash is right: with
256 bits of entropy there is nothing to brute-force) and the first 12
characters as its prefix, which is what logs, lists, audit items and bus
messages show. The full token exists only in the 201 answer that creates it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Final

PREFIX_LENGTH: Final = 12
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_BYTES: Final = 32
_BODY_LENGTH: Final = 43  # ceil(256 / log2(62))
_CHECKSUM_LENGTH: Final = 6  # 62**6 > 2**32


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


@dataclass(frozen=True)
class TokenFormat:
    """One kind of bearer secret: its prefix decides the kind."""

    prefix: str
    _shape: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        body = _BODY_LENGTH + _CHECKSUM_LENGTH
        object.__setattr__(
            self, "_shape", re.compile(rf"{re.escape(self.prefix)}[0-9A-Za-z]{{{body}}}", re.ASCII)
        )

    @property
    def length(self) -> int:
        return len(self.prefix) + _BODY_LENGTH + _CHECKSUM_LENGTH

    def generate(self) -> str:
        """A new secret (show it once; store only `token_hash` and `token_prefix`)."""
        body = _base62(int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big"), _BODY_LENGTH)
        head = self.prefix + body
        return head + _checksum(head)

    def well_formed(self, token: str) -> bool:
        """Prefix, length, alphabet and checksum are right (no lookup needed)."""
        if len(token) != self.length or not self._shape.fullmatch(token):
            return False
        head, check = token[:-_CHECKSUM_LENGTH], token[-_CHECKSUM_LENGTH:]
        return secrets.compare_digest(_checksum(head), check)

    def looks_like(self, token: str) -> bool:
        """Starts like this kind (well formed or not): enough to choose how to refuse it."""
        return token.startswith(self.prefix)


CI_TOKEN: Final = TokenFormat("lfci_")
API_KEY: Final = TokenFormat("lfk_")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_prefix(token: str) -> str:
    """What may be shown and logged: the kind's prefix and the first random characters."""
    return token[:PREFIX_LENGTH]
