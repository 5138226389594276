"""Commands signed by the orchestrator (Ed25519), checked by the agent against the keys it pinned.

The orchestrator signs every `DeployCommand` and `RemoveCommand` it publishes;
the agent learns the orchestrator's public key(s) at enrollment, pins them in
agent.json and refuses a command that is unsigned, signed by a key it did not
pin, or whose signature does not match. NATS permissions already keep other
agents off a data plane's subject; the signature is what stops anyone else who
can publish there (a leaked service credential, a misconfigured account) from
making the cluster run their image.

What is signed (`canonical_bytes`): the command's JSON object without its
`signature` field, keys sorted at every level, no whitespace, UTF-8. What is
subtle:

* The agent verifies the JSON it RECEIVED (`verify(raw_bytes, ...)`), not its
  own model of it: an agent older than the orchestrator drops fields it does
  not know (`extra="ignore"`), and re-serialising its model would then never
  match. It must then act on the object it verified (build its model from the
  same parsed dict), so no two parsers can disagree about what was signed.
* `key_id` (first 16 hex of sha256 of the raw 32-byte public key) only picks
  the pinned key to try; a wrong id is "unknown key", never a reason to trust.
* Rotation: the orchestrator can announce a next key at enrollment, agents pin
  both, and the signing seed is switched later (the READMEs say how).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel

from libs.contracts.messages import CommandSignature

SIGNATURE_FIELD = "signature"

C = TypeVar("C", bound=BaseModel)


class InvalidKey(ValueError):
    """A seed or public key that is not base64 of 32 bytes (the message never holds the seed)."""


def key_id(public_key: bytes) -> str:
    """First 16 hex of sha256 of the raw public key: the same rule as `SealedSecret.recipient_key_id`."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def _b64_32(value: str | bytes, what: str) -> bytes:
    """32 raw bytes (only as `bytes`: a file's content) or base64 of them, surrounding space ignored."""
    if isinstance(value, bytes) and len(value) == 32:
        return value
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise InvalidKey(f"the {what} is not base64") from None
    if len(raw) != 32:
        raise InvalidKey(f"the {what} is not 32 bytes (base64 of an Ed25519 {what})")
    return raw


def signing_key(seed: str | bytes) -> SigningKey:
    """The signing key from its 32-byte seed, raw or base64 (what `LANDFALL_COMMAND_SIGNING_SEED` holds)."""
    return SigningKey(_b64_32(seed, "seed"))


def new_seed() -> str:
    """A fresh seed, base64: what the local stack keeps in its state dir."""
    return base64.b64encode(bytes(SigningKey.generate())).decode()


def public_key_b64(key: SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode()


def parse_public_key(value: str) -> bytes:
    """The raw 32 bytes of a base64 Ed25519 public key; `InvalidKey` otherwise."""
    return bytes(VerifyKey(_b64_32(value, "public key")))


def canonical_bytes(command: BaseModel | Mapping[str, Any]) -> bytes:
    """What is signed: the JSON object without `signature`, keys sorted, compact, UTF-8."""
    doc = json.loads(command.model_dump_json()) if isinstance(command, BaseModel) else dict(command)
    doc.pop(SIGNATURE_FIELD, None)
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sign(command: C, key: SigningKey) -> C:
    """`command` with its `signature` (over everything else) set; any earlier signature is replaced."""
    signature = key.sign(canonical_bytes(command)).signature
    value = CommandSignature(key_id=key_id(bytes(key.verify_key)), value=base64.b64encode(signature).decode())
    return command.model_copy(update={SIGNATURE_FIELD: value})


def refusal(command: BaseModel | Mapping[str, Any] | bytes, public_keys: Iterable[str]) -> str | None:
    """Why `command` (a model, the parsed JSON object, or the bytes received) is not signed by one of
    `public_keys` (base64); None when it is. The reason names key ids, never a key or a signature."""
    try:
        doc: Any = json.loads(command) if isinstance(command, bytes) else command
        if isinstance(doc, BaseModel):
            doc = json.loads(doc.model_dump_json())
    except (ValueError, RecursionError):
        return "the command is not JSON"
    if not isinstance(doc, Mapping):
        return "the command is not a JSON object"
    pinned: dict[str, VerifyKey] = {}
    for public in public_keys:
        try:
            raw = parse_public_key(public)
        except InvalidKey:
            continue
        pinned[key_id(raw)] = VerifyKey(raw)
    if not pinned:
        return (
            "this agent has pinned no command key: enroll again, or set LANDFALL_COMMAND_PUBLIC_KEYS"
            " to the orchestrator's public key"
        )
    signature = doc.get(SIGNATURE_FIELD)
    if signature is None:
        return "the command is not signed"
    if not isinstance(signature, Mapping) or not all(
        isinstance(signature.get(f), str) for f in ("key_id", "value")
    ):
        return "the command's signature is malformed"
    verify_key = pinned.get(signature["key_id"])
    if verify_key is None:
        return (
            f"the command is signed by key {signature['key_id'][:16]!r}, which this agent has not pinned"
            f" (pinned: {', '.join(sorted(pinned))})"
        )
    try:
        verify_key.verify(canonical_bytes(doc), base64.b64decode(signature["value"], validate=True))
    except (BadSignatureError, binascii.Error, ValueError):
        return f"the command's signature does not match its content (key {signature['key_id']})"
    return None


def verify(command: BaseModel | Mapping[str, Any] | bytes, public_keys: Iterable[str]) -> bool:
    """Is `command` signed by one of `public_keys`? (`refusal` says why not.)"""
    return refusal(command, public_keys) is None
