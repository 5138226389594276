"""Small helpers every part of the sandbox shares: tolerant JSON reading, timestamps, names.

`json_object` / `json_array` read untrusted request bodies and stored objects without
type checks at every step: anything that is not the expected JSON type reads as empty.
Generated names use the apiserver's own alphabet (no vowels, no confusable digits).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

JsonDict = dict[str, Any]
T = TypeVar("T")


_NAME_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"  # what the apiserver uses for generateName


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(length))


def short_hash(value: Any, length: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).digest()
    return "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:length])


def json_object(value: Any) -> JsonDict:
    """The value if it is a JSON object, else an empty dict (for tolerant reading)."""
    return value if isinstance(value, dict) else {}


def json_array(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def json_copy(value: T) -> T:
    """A deep copy of a JSON value (dicts, lists and immutable scalars), several times faster than
    `copy.deepcopy`, which keeps a memo and dispatches per type: copying objects is most of the
    sandbox's CPU under load. Anything else is shared, not copied (stored objects hold none)."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, list):
        return [json_copy(v) for v in value]  # type: ignore[return-value]
    return value
