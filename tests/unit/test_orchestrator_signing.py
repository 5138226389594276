"""The orchestrator's command signing key: where it comes from, and no start without one."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from pydantic import SecretStr

from libs.contracts import signing
from services.orchestrator.app import SigningKeyMissing, command_keys, create_app
from services.orchestrator.settings import Settings


def test_without_a_seed_the_orchestrator_refuses_to_start_saying_what_to_set() -> None:
    with pytest.raises(SigningKeyMissing, match="LANDFALL_COMMAND_SIGNING_SEED"):
        create_app(Settings(command_signing_seed=None, command_signing_seed_file=None))


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"command_signing_seed": SecretStr("not base64!")}, "seed is unusable"),
        ({"command_signing_seed": SecretStr(base64.b64encode(b"short").decode())}, "32 bytes"),
        ({"command_signing_seed_file": Path("/nonexistent/seed")}, "cannot read"),
        (
            {"command_signing_seed": SecretStr(signing.new_seed()), "command_next_public_key": "abc"},
            "LANDFALL_COMMAND_NEXT_PUBLIC_KEY",
        ),
    ],
)
def test_an_unusable_key_is_refused_without_showing_it(settings: dict[str, object], says: str) -> None:
    with pytest.raises(SigningKeyMissing, match=says) as refused:
        command_keys(Settings.model_validate(settings))
    assert "not base64!" not in str(refused.value)


def test_a_seed_file_holds_base64_or_the_raw_32_bytes(tmp_path: Path) -> None:
    key = SigningKey.generate()
    for content in (bytes(key), base64.b64encode(bytes(key)) + b"\n"):
        path = tmp_path / "seed"
        path.write_bytes(content)
        assert command_keys(Settings(command_signing_seed_file=path)).announced == [
            signing.public_key_b64(key)
        ]


def test_the_next_key_is_announced_after_the_current_one_and_only_once() -> None:
    seed, upcoming = signing.new_seed(), SigningKey.generate()
    current = signing.public_key_b64(signing.signing_key(seed))
    nxt = signing.public_key_b64(upcoming)
    keys = command_keys(Settings(command_signing_seed=SecretStr(seed), command_next_public_key=nxt))
    assert keys.announced == [current, nxt]
    same = command_keys(Settings(command_signing_seed=SecretStr(seed), command_next_public_key=current))
    assert same.announced == [current]
