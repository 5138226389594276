"""Standard Webhooks (standardwebhooks.com) signatures: HMAC-SHA256 over id.timestamp.body.

Why: a CI token alone proves who sent a request; a component can additionally
require that each request be signed with a per-component secret, so a leaked
token (e.g. in a build log) cannot be replayed or used to send other images.

What is subtle:
- The secret is `whsec_` + base64; the HMAC key is the *decoded* bytes.
- The signed content is the raw body bytes exactly as received, never a
  re-serialisation of the parsed JSON.
- `webhook-signature` may hold several space-separated `v1,<base64>` entries
  (for secret rotation on the sender's side); any valid one is enough, and each
  comparison is constant-time.
- The timestamp window (default ±5 min) bounds how long a captured request is
  worth anything; webhook ids are remembered for longer than the window, so a
  replay inside the window is caught by id and one outside it by time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Final, Literal

SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32
MAX_ID_LENGTH: Final = 255

Failure = Literal["missing", "invalid", "stale"]


class SignatureError(Exception):
    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after `whsec_`."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("signing secret is not whsec_ followed by base64") from exc


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature entry."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(key: bytes, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: int) -> str:
    """Check the three headers; return the webhook id. Raises SignatureError."""
    webhook_id = headers.get("webhook-id", "")
    raw_timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not webhook_id or not raw_timestamp or not signatures:
        raise SignatureError(
            "missing",
            "this component requires signed requests: send webhook-id, webhook-timestamp and "
            "webhook-signature (Standard Webhooks)",
        )
    if len(webhook_id) > MAX_ID_LENGTH or not webhook_id.isascii() or not webhook_id.isprintable():
        raise SignatureError(
            "invalid", f"webhook-id must be at most {MAX_ID_LENGTH} printable ASCII characters"
        )
    if not raw_timestamp.isascii() or not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
        raise SignatureError(
            "invalid", "webhook-timestamp must be an integer number of seconds since the epoch"
        )
    timestamp = int(raw_timestamp)
    skew = int(now) - timestamp
    if abs(skew) > tolerance:
        direction = "old" if skew > 0 else "in the future"
        raise SignatureError(
            "stale",
            f"webhook-timestamp is {abs(skew)} s {direction}; requests are accepted within ±{tolerance} s "
            "(check the sender's clock)",
        )
    expected = sign(key, webhook_id, timestamp, body).encode("ascii")
    matched = False
    for entry in signatures.split(" ")[:16]:
        # No early exit: every entry is compared, each in constant time.
        matched |= hmac.compare_digest(entry.encode("utf-8", "replace"), expected)
    if not matched:
        raise SignatureError(
            "invalid", "webhook-signature does not match the body and the component's secret"
        )
    return webhook_id
