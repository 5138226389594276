"""Server-made identifiers: a readable prefix and a time-ordered random part.

Ids sort by creation time (like ULIDs), which keeps B-tree inserts local and
makes logs easy to read; the random tail (80 bits) makes them unguessable
enough that one tenant cannot enumerate another's objects.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase

PREFIXES = ("reg", "dp", "dep", "tok", "exe", "evt", "org", "env", "prj", "cmp", "td", "key", "aud")


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 32)
        chars.append(_ALPHABET[rest])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return `prefix_` + 10 chars of milliseconds + 16 chars of randomness."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode(millis, 10)}{_encode(secrets.randbits(80), 16)}"


def looks_like(prefix: str, value: str) -> bool:
    """Cheap shape check so that a malformed id is a 404, not a database error."""
    body = value.removeprefix(f"{prefix}_")
    return value.startswith(f"{prefix}_") and len(body) == 26 and all(c in _ALPHABET for c in body)
