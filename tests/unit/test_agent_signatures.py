"""`libs.contracts.signing`: what the agent checks a command's signature on, and what it refuses."""

from __future__ import annotations

import base64
import json

from nacl.signing import SigningKey

from libs.contracts import signing
from libs.contracts.messages import DeployCommand
from tests.unit.test_agent_manifests import command

KEY = SigningKey.generate()
PINNED = [signing.public_key_b64(KEY)]


def test_a_signed_command_verifies_as_a_model_as_bytes_and_whatever_its_key_order() -> None:
    signed = signing.sign(command(), KEY)
    assert signing.verify(signed, PINNED)
    raw = signed.encode()
    assert signing.verify(raw, PINNED)
    reordered = json.dumps(dict(reversed(list(json.loads(raw).items())))).encode()
    assert signing.verify(reordered, PINNED)


def test_a_field_this_agent_does_not_know_is_covered_by_the_signature() -> None:
    """A newer orchestrator's field: verified on the bytes, it counts; dropped or changed, it fails."""
    doc = json.loads(command().encode()) | {"future_field": {"b": 1, "a": [1, 2]}}
    signature = KEY.sign(signing.canonical_bytes(doc)).signature
    doc["signature"] = {
        "key_id": signing.key_id(bytes(KEY.verify_key)),
        "value": base64.b64encode(signature).decode(),
    }
    assert signing.refusal(json.dumps(doc).encode(), PINNED) is None
    assert DeployCommand.model_validate(doc)  # the model ignores the field ...
    doc["future_field"]["b"] = 2  # ... but changing it breaks the signature
    assert "does not match" in (signing.refusal(doc, PINNED) or "")


def test_refusals_name_key_ids_and_never_a_key() -> None:
    other = SigningKey.generate()
    cases = {
        "not signed": command(),
        "has not pinned": signing.sign(command(), other),
        "does not match": signing.sign(command(), KEY).model_copy(update={"image": "evil.example/x:1"}),
    }
    for says, cmd in cases.items():
        why = signing.refusal(cmd, PINNED)
        assert why is not None
        assert says in why
        assert PINNED[0] not in why
        assert signing.public_key_b64(other) not in why
    assert "not JSON" in (signing.refusal(b"{", PINNED) or "")
    assert "malformed" in (signing.refusal({"signature": "x"}, PINNED) or "")
    assert "pinned no command key" in (signing.refusal(signing.sign(command(), KEY), []) or "")
    assert "pinned no command key" in (signing.refusal(signing.sign(command(), KEY), ["junk"]) or "")


def test_signing_again_replaces_the_signature() -> None:
    other = SigningKey.generate()
    twice = signing.sign(signing.sign(command(), other), KEY)
    assert signing.verify(twice, PINNED)
    assert twice.signature is not None
    assert twice.signature.key_id == signing.key_id(bytes(KEY.verify_key))
